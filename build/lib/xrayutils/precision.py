"""Which precision a model computes in: float32, or a Keras mixed policy where the hardware makes it pay.

A chapter's ``mixed_precision`` parameter is ``True``, ``False``, ``"auto"`` or a
policy name (:data:`MIXED_POLICIES`).  ``"auto"`` decides per model and per kind of
work (:func:`choose`):

* on a GPU, ``mixed_float16`` (its tensor cores);
* on a CPU with native bfloat16 matrix units (``/proc/cpuinfo`` flags
  :data:`NATIVE_BFLOAT16`), ``mixed_bfloat16`` for the work a stored measurement
  (:data:`SPEEDUPS`, from ``benchmarks/whole_network_speed.py``) found at least
  :data:`MIN_SPEEDUP` times faster than float32 on such a CPU, and float32 for the
  rest, and for work never measured: on a Xeon with AMX, VGG16's frozen-base forward
  ran 6.5 times faster in bfloat16, ResNet34 trained whole 1.4 times, and
  EfficientNetV2S 0.91 times as fast (fused batch normalisation, 2026-12-06);
* on other CPUs, float32: without those units bfloat16 is emulated and gave
  nothing on an AVX2-only AMD EPYC (4.03 images/s against 4.24).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xrayutils import results

if TYPE_CHECKING:
    import pandas as pd

#: Keras' mixed-precision policies, which ``mixed_precision`` may also name to choose one whatever the device.
MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")
#: CPU flags of native bfloat16 matrix instructions (Intel AMX, AVX512-BF16): where bfloat16 can be faster than float32.
NATIVE_BFLOAT16 = ("amx_bf16", "avx512_bf16")
#: bfloat16 is chosen for work it made at least this much faster: below it, its rounding is not worth the few percent.
MIN_SPEEDUP = 1.1
#: The two kinds of work whose speed-ups differ: a frozen base's forward pass (feature caching) and training every layer.
FROZEN_FORWARD, WHOLE_NETWORK = "frozen-base forward", "whole network"
#: ``benchmarks/whole_network_speed.py --mixed-precision false mixed_bfloat16`` rows, measured on a CPU with native bfloat16.
SPEEDUPS = results.MEASUREMENTS / "bfloat16_speedups.json"


@dataclass(frozen=True)
class Precision:
    """The Keras policy one model runs under, and why, in words for its page."""

    policy: str
    reason: str

    def __str__(self) -> str:
        return f"{self.policy} ({self.reason})"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (the first ``flags`` line of ``cpuinfo``); empty where it cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.split(":")[0].strip() == "flags"), "flags:")
    return frozenset(line.split(":", 1)[1].split())


def native_bfloat16(flags: Iterable[str]) -> bool:
    """Whether a CPU with these flags has bfloat16 matrix instructions (:data:`NATIVE_BFLOAT16`)."""
    return any(flag in set(flags) for flag in NATIVE_BFLOAT16)


def _paired(rows: list[dict]) -> dict[tuple, dict[str, dict]]:
    """Benchmark rows that time both policies, grouped: ``{(model, work, image size, batch, XLA): {policy: row}}``."""
    groups: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        key = (row["model"], row.get("work", WHOLE_NETWORK), row.get("image size"), row.get("batch"), row.get("XLA asked"))
        groups.setdefault(key, {})[row.get("precision", "float32")] = row
    return {key: pair for key, pair in groups.items() if {"float32", "mixed_bfloat16"} <= set(pair)}


def _rate(row: dict) -> float:
    return row.get("images/s", row.get("GFLOP/s"))


def _ratio(pair: dict[str, dict]) -> float:
    """bfloat16's rate over float32's in a :func:`_paired` pair."""
    return _rate(pair["mixed_bfloat16"]) / _rate(pair["float32"])


def slowest_pairs(rows: list[dict]) -> dict[tuple[str, str], dict[str, dict]]:
    """Per ``(model, work)``: the float32 and bfloat16 rows of the size whose ratio was lowest (not the best case)."""
    out: dict[tuple[str, str], dict[str, dict]] = {}
    for (model, work, *_), pair in _paired(rows).items():
        kept = out.get((model, work))
        if kept is None or _ratio(pair) < _ratio(kept):
            out[(model, work)] = pair
    return out


def speedups(rows: list[dict]) -> dict[tuple[str, str], float]:
    """``{(model, work): bfloat16 images/s over float32's}`` from benchmark rows that time both policies.

    A row gives ``model``, ``work`` (:data:`FROZEN_FORWARD` or :data:`WHOLE_NETWORK`;
    whole network when absent), ``precision`` and ``images/s`` (or ``GFLOP/s``,
    the same ratio for one model and size); the ratio is taken between rows
    alike in everything else, and the lowest kept when several batch or image
    sizes were timed (:func:`slowest_pairs`).
    """
    return {key: _ratio(pair) for key, pair in slowest_pairs(rows).items()}


def stored_speedups(path: Path = SPEEDUPS) -> dict[tuple[str, str], float]:
    """:func:`speedups` of the measurement stored at ``path``; empty when there is none (then ``auto`` keeps float32 on a CPU)."""
    return speedups(results.read_json(path)["rows"]) if Path(path).is_file() else {}


def choose(
    setting: bool | str,
    *,
    model: str,
    work: str | Callable[[], str],
    gpus: int,
    flags: Iterable[str],
    measured: dict[tuple[str, str], float],
) -> Precision:
    """The policy ``model`` runs under for ``setting`` (a chapter's ``mixed_precision``), on a machine with ``gpus`` and CPU ``flags``.

    ``work`` is :data:`FROZEN_FORWARD` or :data:`WHOLE_NETWORK`, or a function
    returning it, called only when the choice depends on it (``auto`` on a CPU
    with native bfloat16: telling needs the model built).  ``measured`` holds
    :func:`speedups`.  ``True`` means float16 on a GPU and bfloat16 on a CPU, as
    before ``auto`` chose per model.
    """
    if setting in MIXED_POLICIES:
        return Precision(str(setting), "asked for")
    if setting is True:
        return Precision("mixed_float16" if gpus else "mixed_bfloat16", "asked for (mixed_precision: True)")
    if setting is False:
        return Precision("float32", "asked for (mixed_precision: False)")
    if setting != "auto":
        raise ValueError(f"mixed_precision must be True, False or 'auto', or one of {', '.join(MIXED_POLICIES)}, got {setting!r}")
    if gpus:
        return Precision("mixed_float16", "auto: a GPU")
    if not native_bfloat16(flags):
        return Precision("float32", f"auto: this CPU has no native bfloat16 ({' or '.join(NATIVE_BFLOAT16)})")
    kind = work() if callable(work) else work
    ratio = measured.get((model, kind))
    if ratio is None:
        return Precision("float32", f"auto: bfloat16 was never measured for {model}'s {kind} on such a CPU")
    if ratio >= MIN_SPEEDUP:
        return Precision("mixed_bfloat16", f"auto: native bfloat16, measured {ratio:.1f}x float32's rate for {model}'s {kind}")
    return Precision("float32", f"auto: bfloat16 measured {ratio:.2f}x float32's rate for {model}'s {kind}, no gain")


def speedup_table(rows: list[dict]) -> pd.DataFrame:
    """The stored measurement as the Performance page shows it: per model and work, both rates, their ratio and ``auto``'s choice.

    The choice is the one ``auto`` makes on a CPU with native bfloat16; other
    CPUs keep float32 for all.  Rates are images/s (GFLOP/s for rows that give
    only those); where several sizes were timed, the row the choice rests on
    (:func:`slowest_pairs`).
    """
    import pandas as pd

    table = []
    for (model, work), pair in slowest_pairs(rows).items():
        ratio = _ratio(pair)
        size, batch = pair["float32"].get("image size"), pair["float32"].get("batch")
        table.append({"model": model, "work": f"{work}, {size} px", "batch": batch, "float32": _rate(pair["float32"]),
                      "bfloat16": _rate(pair["mixed_bfloat16"]), "ratio": ratio, "auto": "bfloat16" if ratio >= MIN_SPEEDUP else "float32"})
    return pd.DataFrame(table)
