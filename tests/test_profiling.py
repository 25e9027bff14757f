"""Where a training step's time goes: op events of a profiler trace summed by kind (synthetic traces, then one real one)."""

import pytest

from xrayutils import profiling

PS = 10**12  # picoseconds per second


def trace(events_by_line: dict[str, list[tuple[str, float, float]]]):
    """An ``XSpace`` with one plane: for each line name, ``(event name, start s, duration s)`` events."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    xspace = xplane_pb2.XSpace()
    plane = xspace.planes.add(name="/host:CPU")
    ids: dict[str, int] = {}
    for number, (line_name, events) in enumerate(events_by_line.items()):
        line = plane.lines.add(id=number, name=line_name, timestamp_ns=0)
        for name, start, duration in events:
            if name not in ids:
                ids[name] = len(ids) + 1
                plane.event_metadata[ids[name]].name = name
            line.events.add(metadata_id=ids[name], offset_ps=int(start * PS), duration_ps=int(duration * PS))
    return xspace


@pytest.mark.parametrize(("op", "scope", "kind"), [
    ("Conv2DBackpropInput", "gradient_tape/functional_1/conv2_block1_conv/convolution", "convolution and matmul"),
    ("_FusedConv2D", "functional_1/stem_conv/convolution", "convolution and matmul"),
    ("DepthwiseConv2dNative", "functional_1/block1a_dwconv/depthwise", "convolution and matmul"),
    ("Mul", "functional_1/block2a_bn/batchnorm/mul", "batch normalisation"),
    ("FusedBatchNormV3", "functional_1/bn/FusedBatchNormV3", "batch normalisation"),
    ("_MklNativeFusedBatchNormGradV3", "gradient_tape/functional_1/conv1_bn/FusedBatchNormGradV3", "batch normalisation"),
    ("_MklNativeConv2DBackpropFilter", "gradient_tape/functional_1/conv1/convolution", "convolution and matmul"),
    ("Sigmoid", "functional_1/block1a_activation/Sigmoid", "element-wise and reductions"),
    ("ResourceApplyAdam", "adam/update", "optimizer update"),
    ("Mul", "adam/Mul_3", "optimizer update"),
    ("AddV2", "sequential/augmentation/random_rotation/add", "augmentation"),
])
def test_each_op_falls_in_its_kind(op, scope, kind):
    assert profiling.kind_of(op, scope) == kind


def test_breakdown_sums_op_time_by_kind_and_counts_the_gaps_no_op_filled():
    xspace = trace({
        "tf_Compute/1": [("model/conv1/convolution:Conv2D", 0.0, 0.4), ("model/bn1/batchnorm/mul:Mul", 0.4, 0.1),
                         ("ExecutorState::Process", 0.0, 0.5)],  # the executor's own region: not an op
        "tf_Compute/2": [("gradient_tape/model/conv1/convolution:Conv2DBackpropFilter", 0.2, 0.5)],  # overlaps thread 1
        "tf_data_private_threadpool": [("model/augmentation/flip:ReverseV2", 0.0, 0.2)],
        "python": [("model/conv1/convolution:Conv2D", 0.0, 9.0)],  # neither a step nor a data thread
    })
    table = profiling.breakdown(xspace, steps=2, wall_seconds=1.0).set_index("kind")["seconds/step"]
    assert table["convolution and matmul"] == pytest.approx(0.45)  # (0.4 + 0.5) / 2 steps
    assert table["batch normalisation"] == pytest.approx(0.05)
    assert table["augmentation"] == pytest.approx(0.1)
    assert table["no op running"] == pytest.approx(0.15)  # step threads busy over [0, 0.7] of 1.0 s: 0.3 s / 2
    assert table["wall time"] == pytest.approx(0.5)
    assert "optimizer update" not in table.index


def test_top_ops_lists_the_slowest_op_types_first():
    xspace = trace({"tf_Compute/1": [("a/conv:Conv2D", 0.0, 0.1), ("b/conv:Conv2D", 0.1, 0.1), ("c/adam/x:Mul", 0.2, 0.5)]})
    top = profiling.top_ops(xspace, steps=1, n=5)
    assert list(top["op"]) == ["Mul", "Conv2D"]
    assert top["seconds/step"].tolist() == pytest.approx([0.5, 0.2])
    assert top["kind"].tolist() == ["optimizer update", "convolution and matmul"]


def test_a_real_trace_of_a_tiny_model_has_convolutions_and_an_optimizer(tmp_path):
    import keras

    from tests.test_train import PROTOCOL, tiny_model

    xspace, wall = profiling.profile_steps(tiny_model, PROTOCOL, steps=2, logdir=tmp_path)
    import tensorflow as tf

    table = profiling.breakdown(xspace, steps=2, wall_seconds=wall).set_index("kind")["seconds/step"]
    assert table["convolution and matmul"] > 0 and table["optimizer update"] > 0
    # The trace covers the two timed steps: ops ran during part of them, and no more op time than the
    # step threads could hold (each inter-op thread at most the whole wall time).
    per_step, threads = wall / 2, max(1, tf.config.threading.get_inter_op_parallelism_threads() or 1)
    assert 0 < table["no op running"] < per_step
    on_steps = table.drop(["augmentation", "no op running", "wall time"], errors="ignore").sum()
    assert on_steps <= per_step * threads
    keras.backend.clear_session()
