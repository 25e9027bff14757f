"""How the near-duplicate audit grows with the number of images: time and peak memory of ``audit.near_duplicate_pairs``.

Each size runs in a fresh process on generated radiograph-like hashes: n/20 "looks", each image one look with 10%
of its 64 bits flipped, and 2% exact copies, so that near-duplicates and look-alikes exist as in chest X-rays.
``--full-matrix`` times the n x n distance matrix instead (what the audit did before), and checks both give the
same pairs.

    python benchmarks/near_duplicate_scale.py 5000 20000 50000
    python benchmarks/near_duplicate_scale.py --full-matrix 5000 10000
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import numpy as np


def hashes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    looks = rng.random((max(1, n // 20), 64)) < 0.5
    made = looks[rng.integers(0, len(looks), n)] ^ (rng.random((n, 64)) < 0.10)
    copies = rng.choice(n, n // 50, replace=False)
    made[copies[1:]] = made[copies[:-1]]
    return made


def measure(n: int, full_matrix: bool) -> str:
    from xrayutils import audit

    h = hashes(n)
    started = time.perf_counter()
    if full_matrix:
        d = audit.hamming_distances(h)
        i, j = np.triu_indices(n, k=1)
        found = {(a, b) for a, b in zip(i[d[i, j] <= 4].tolist(), j[d[i, j] <= 4].tolist())}
    else:
        found = {(a, b) for a, b, _ in audit.near_duplicate_pairs(h, max_distance=4).tolist()}
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    said = f"{n:,} images, {'full matrix' if full_matrix else 'multi-index'}: {len(found):,} pairs within 4 bits, {seconds:.1f} s"
    if full_matrix:
        blockwise = {(a, b) for a, b, _ in audit.near_duplicate_pairs(h, max_distance=4).tolist()}
        said += f"; the same pairs as the blockwise search: {found == blockwise}"
    return f"{said}, peak {peak:.2f} GB"


def main(argv: list[str]) -> int:
    full = "--full-matrix" in argv
    sizes = [int(a) for a in argv if a != "--full-matrix"]
    if len(sizes) == 1:
        print(measure(sizes[0], full), flush=True)
        return 0
    for n in sizes:  # each in a process of its own: a peak is that size's
        subprocess.run([sys.executable, __file__, *(["--full-matrix"] if full else []), str(n)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
