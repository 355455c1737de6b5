"""benchmarks.op_profile reads a real tf.profiler trace and ranks its op types."""

import pytest
import tensorflow as tf

from benchmarks import op_profile, profile_calls


def test_ranks_the_ops_of_a_profiled_function(tmp_path, capsys):
    kernel = tf.random.stateless_normal([3, 3, 8, 16], (1, 2))
    images = tf.random.stateless_normal([2, 33, 33, 8], (3, 4))

    @tf.function
    def step(x):
        return tf.reduce_sum(tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME")))

    step(images)
    profile_calls(lambda: step(images).numpy(), str(tmp_path), calls=2)
    seconds, counts, span = op_profile.op_times(op_profile.newest_trace(str(tmp_path)))
    # Conv2D, or a fused Conv2D + Relu where grappler / oneDNN rewrites the graph.
    convs = [op for op in counts if "Conv2D" in op]
    assert len(convs) == 1 and counts[convs[0]] == 2, counts
    assert seconds[convs[0]] > 0 and span > 0
    assert not any(op.endswith("PartitionedCall") for op in seconds)
    assert op_profile.main([str(tmp_path), "--top=3"]) == 0
    table = capsys.readouterr().out
    assert "Conv2D" in table and "share" in table
    by_name, _, _ = op_profile.op_times(op_profile.newest_trace(str(tmp_path)), by_name=True)
    assert sum(by_name.values()) == pytest.approx(sum(seconds.values()))
    assert any(
        key.startswith(convs[0] + "  ") and "Conv2D" in key.split("  ")[1] for key in by_name
    ), list(by_name)


def test_a_directory_without_a_trace_is_an_error(tmp_path, capsys):
    assert op_profile.main([str(tmp_path)]) == 1
    assert "no *.xplane.pb" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        op_profile.newest_trace(str(tmp_path))
