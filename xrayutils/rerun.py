"""When a chapter need not run again: what its last successful run depended on, recorded by the runner.

A chapter runs again when its notebook, its parameters, the data, the package's code or
the run of a chapter whose results it reads changed since its last successful run in the
same build folder. Otherwise its page and results are still those of the same inputs, and
``xray-book build`` skips it: a rebuild with nothing changed takes seconds, not the
40 minutes of the ``cpu`` book, and a build stopped in chapter 03 resumes there.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from xrayutils import results

#: In the build folder: ``{chapter: {"key": ..., "finished": ...}}`` of each chapter's last successful run.
RUNS_FILE = "runs.json"
PACKAGE = Path(__file__).resolve().parent


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_signature(roots: list[Path]) -> str:
    """Every file under ``roots`` by relative path, size and modification time: a changed, added or removed image changes it.

    Cheaper than hashing the images' bytes (which each chapter's own data
    fingerprint does), and it errs on the safe side: a file merely touched reruns.
    """
    entries = []
    for root in roots:
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
            stat = path.stat()
            entries.append((root.name, str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return _digest(entries)


def code_signature() -> str:
    """The package's own code: any change to ``xrayutils`` reruns every chapter, since any chapter may use it."""
    return _digest({path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(PACKAGE.glob("*.py"))})


def notebook_signature(notebook: Path) -> str:
    """A notebook's cells (kind and source), not its outputs or metadata."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    return _digest([(cell["cell_type"], "".join(cell["source"])) for cell in cells])


def chapter_key(notebook: Path, parameters: dict[str, Any], *, data: str, code: str, needed: dict[str, str | None]) -> str:
    """What a run of ``notebook`` depends on, as one string: equal keys, same run.

    ``needed`` holds the keys of the chapters whose results it reads (``None``
    for one that never finished here).
    """
    return _digest({"notebook": notebook_signature(notebook), "parameters": parameters, "data": data, "code": code,
                    "needed": needed})


def recorded(build_dir: Path) -> dict[str, dict[str, str]]:
    """The last successful run of each chapter in ``build_dir``, as :func:`record` left them."""
    path = Path(build_dir) / RUNS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def record(build_dir: Path, chapter: str, key: str | None) -> None:
    """Note ``chapter``'s successful run with ``key``, or (``None``) forget it after a failed or stopped one."""
    runs = recorded(build_dir)
    if key is None:
        runs.pop(chapter, None)
    else:
        runs[chapter] = {"key": key, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    results.write_json_atomic(Path(build_dir) / RUNS_FILE, runs)
