"""Where one whole-network training step spends its time on the CPU: TensorFlow's profiler, its ops grouped by kind.

:func:`profile_steps` traces a few training steps of a model (as
``benchmarks/whole_network_speed.py`` trains it: one random batch in memory, the
augmentation on each batch) and :func:`breakdown` sums the trace's op events by
:data:`KINDS`: convolutions and matrix products, batch normalisation, the other
element-wise and reduction ops, the optimizer's update, the augmentation (which
tf.data runs on threads of its own, beside the step), and the time of the step
no op filled (Python, Keras and the executor's dispatch, and waiting).
``benchmarks/step_profile.py`` prints it for chapter 03's models.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

_OPTIMIZER_SCOPE = re.compile(r"(^|/)(adam|adamax|sgd|rmsprop)\w*/", re.IGNORECASE)
_BATCH_NORM_SCOPE = re.compile(r"(batch_normalization|_bn|batchnorm|moments)(_\d+)*/")
_MATRIX_OPS = re.compile(r"Conv2D|DepthwiseConv2d|MatMul")  # also oneDNN's _MklNativeConv2D..., _FusedConv2D, _FusedMatMul
#: Kinds of op, each a test on the op's type and its name scope; the first that matches wins, the rest is "other ops".
KINDS: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("augmentation", lambda op, scope: "augmentation" in scope),
    ("optimizer update", lambda op, scope: op.startswith("ResourceApply") or _OPTIMIZER_SCOPE.search(scope) is not None),
    ("batch normalisation", lambda op, scope: "FusedBatchNorm" in op or _BATCH_NORM_SCOPE.search(scope) is not None),
    ("convolution and matmul", lambda op, scope: _MATRIX_OPS.search(op) is not None),
    ("element-wise and reductions", lambda op, scope: True),
)
#: The line names of the threads that run a step's ops (TensorFlow's inter-op pool) and tf.data's work.
STEP_THREADS, DATA_THREADS = "tf_Compute", "tf_data"
#: An op event's name: ``scope/of/the/op:OpType``.
OP_EVENT = re.compile(r"^(?P<scope>[^:]+):(?P<op>[A-Za-z_][A-Za-z0-9_]*)$")  # not the executor's own "Class::Method" regions


def kind_of(op: str, scope: str) -> str:
    """The :data:`KINDS` name of an op of type ``op`` in name scope ``scope``."""
    return next(name for name, test in KINDS if test(op, scope))


def _union_seconds(intervals: list[tuple[int, int]]) -> float:
    """Seconds covered by at least one of the ``(start, end)`` picosecond intervals."""
    covered, last = 0, None
    for start, end in sorted(intervals):
        if last is None or start > last:
            covered, last = covered + end - start, end
        elif end > last:
            covered, last = covered + end - last, end
    return covered / 1e12


def _op_events(xspace):
    """The trace's op events on step and tf.data threads: ``(on a step thread, op type, scope, start ps, duration ps)``."""
    for plane in xspace.planes:
        for line in plane.lines:
            on_step = line.name.startswith(STEP_THREADS)
            if not (on_step or line.name.startswith(DATA_THREADS)):
                continue
            for event in line.events:
                match = OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
                if match is not None:  # else the executor's own regions (ExecutorState::Process, ParallelFor), which hold op events
                    yield on_step, match["op"], match["scope"], line.timestamp_ns * 1000 + event.offset_ps, event.duration_ps


def breakdown(xspace, *, steps: int, wall_seconds: float) -> pd.DataFrame:
    """Seconds per step by kind of op, from a profiler trace (an ``XSpace``) of ``steps`` steps that took ``wall_seconds``.

    An op's time is its event's duration on the thread that ran it, so ops that
    ran side by side (two inter-op threads) both count: the ``seconds/step``
    column sums to more than the wall time when they overlap.  ``share`` is of
    the summed op time.  The row ``no op running`` is the wall time during which
    no step thread ran any op: Python and Keras between steps, the executor's
    dispatch, and waiting for data.
    """
    per_kind: dict[str, float] = {}
    busy: list[tuple[int, int]] = []
    for on_step, op, scope, start, duration in _op_events(xspace):
        kind = kind_of(op, scope)
        per_kind[kind] = per_kind.get(kind, 0.0) + duration / 1e12
        if on_step and kind != "augmentation":
            busy.append((start, start + duration))
    total = sum(per_kind.values()) or 1.0
    rows = [{"kind": name, "seconds/step": per_kind[name] / steps, "share": per_kind[name] / total}
            for name, _ in KINDS if name in per_kind]
    rows.append({"kind": "no op running", "seconds/step": max(0.0, wall_seconds - _union_seconds(busy)) / steps, "share": None})
    rows.append({"kind": "wall time", "seconds/step": wall_seconds / steps, "share": None})
    return pd.DataFrame(rows)


def top_ops(xspace, *, steps: int, n: int = 12) -> pd.DataFrame:
    """The ``n`` op types that took longest, in seconds per step (summed over threads), with their kind."""
    seconds: dict[tuple[str, str], float] = {}
    for _, op, scope, _, duration in _op_events(xspace):
        key = (op, kind_of(op, scope))
        seconds[key] = seconds.get(key, 0.0) + duration / 1e12
    rows = [{"op": op, "kind": kind, "seconds/step": s / steps} for (op, kind), s in seconds.items()]
    return pd.DataFrame(rows).sort_values("seconds/step", ascending=False).head(n).reset_index(drop=True)


def profile_steps(build: Callable, protocol, *, steps: int = 3, logdir: Path | None = None):
    """Trace ``steps`` training steps of ``build()``'s model under ``protocol`` (after warm-up); ``(xspace, wall seconds)``.

    The model trains as :func:`xrayutils.benchmark.timed_steps` trains it: one
    random batch in memory, repeated, with the protocol's augmentation applied
    to each batch by tf.data.
    """
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from xrayutils import augmentations, benchmark

    size, batch = protocol.image_size, protocol.batch_size
    images = tf.random.uniform((batch, size, size, 3), 0, 255, seed=0)
    model = build()
    augment = augmentations.augmentation_for(dataclasses.replace(protocol, seed=0))
    benchmark.timed_steps(model, images, protocol, steps=1, augment=augment)  # compiles, traces and warms up
    labels = tf.zeros((batch, model.output_shape[-1]))
    data = tf.data.Dataset.from_tensors((images, labels)).repeat()
    data = augmentations.augmented(data, augment) if augment is not None else data
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)
    folder = Path(logdir or tempfile.mkdtemp(prefix="step-profile-"))
    tf.profiler.experimental.start(str(folder))
    started = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    wall = time.perf_counter() - started
    tf.profiler.experimental.stop()
    trace = max(folder.rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)
    xspace = xplane_pb2.XSpace()
    xspace.ParseFromString(trace.read_bytes())
    return xspace, wall
