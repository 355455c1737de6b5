"""Learning-rate policies (official get_model_learning_rate) and the TF1 momentum rule."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab.training import optimizers
from deeplab.training.schedules import LearningRateConfig, learning_rate_at


def _lr(step, **kwargs):
    return float(learning_rate_at(LearningRateConfig(**kwargs), step))


def test_poly_is_tf_polynomial_decay():
    kw = dict(base_learning_rate=0.007, training_number_of_steps=100, learning_power=0.9)
    for step in (0, 1, 37, 99, 100, 150):
        want = 0.007 * (1 - min(step, 100) / 100) ** 0.9
        assert _lr(step, **kw) == pytest.approx(want, rel=1e-5, abs=1e-12)
    # end_learning_rate: (base - end) * (1 - t)^p + end.
    got = _lr(50, end_learning_rate=0.001, **kw)
    assert got == pytest.approx((0.007 - 0.001) * 0.5**0.9 + 0.001, rel=1e-5)


def test_slow_start_replaces_the_rate_and_shifts_the_decay():
    kw = dict(
        base_learning_rate=0.01,
        training_number_of_steps=110,
        slow_start_step=10,
        slow_start_learning_rate=1e-4,
        learning_power=1.0,
    )
    assert _lr(0, **kw) == pytest.approx(1e-4)
    assert _lr(9, **kw) == pytest.approx(1e-4)
    # Official: polynomial_decay(base, step - slow_start_step, steps - slow_start_step).
    assert _lr(10, **kw) == pytest.approx(0.01)
    assert _lr(60, **kw) == pytest.approx(0.005)
    assert _lr(110, **kw) == pytest.approx(0.0, abs=1e-9)


def test_step_policy_is_staircase_exponential_decay():
    kw = dict(
        learning_policy="step",
        base_learning_rate=0.1,
        learning_rate_decay_step=10,
        learning_rate_decay_factor=0.5,
    )
    assert [round(_lr(s, **kw), 6) for s in (0, 9, 10, 19, 20, 35)] == [
        0.1,
        0.1,
        0.05,
        0.05,
        0.025,
        0.0125,
    ]


def test_defaults_are_official():
    c = LearningRateConfig()
    assert (
        c.learning_policy,
        c.base_learning_rate,
        c.learning_power,
        c.training_number_of_steps,
        c.end_learning_rate,
        c.slow_start_step,
        c.slow_start_learning_rate,
        c.learning_rate_decay_step,
        c.learning_rate_decay_factor,
    ) == ("poly", 1e-4, 0.9, 30000, 0.0, 0, 1e-4, 2000, 0.1)


def test_bad_policy_is_named():
    with pytest.raises(ValueError, match="--learning_policy"):
        LearningRateConfig(learning_policy="cosine")


def test_tf1_momentum_rule_with_changing_learning_rate():
    # TF1: accum = m * accum + g; var -= lr * accum (Keras SGD would use lr inside accum).
    lrs = iter([0.5, 0.25, 0.125])
    current = {"lr": 0.5}
    opt = optimizers.TF1Momentum(learning_rate=lambda: current["lr"], momentum=0.9)
    var = tf.Variable([1.0])
    grads = [2.0, -1.0, 3.0]
    accum, want = 0.0, 1.0
    for g in grads:
        current["lr"] = next(lrs)
        opt.apply_gradients([(tf.constant([g]), var)])
        accum = 0.9 * accum + g
        want -= current["lr"] * accum
    np.testing.assert_allclose(var.numpy(), [want], rtol=1e-6)


def test_tf1_momentum_is_the_official_fused_op_and_sparse_updates_follow_the_same_rule():
    def train(gradients, var):
        opt = optimizers.TF1Momentum(learning_rate=0.1, momentum=0.9)
        step = tf.function(lambda g: opt.apply_gradients([(g, var)]))
        for g in gradients:
            step(g)
        return step, var.numpy()

    dense = [tf.constant([[1.0, 2.0], [3.0, -1.0]]), tf.constant([[0.5, 0.0], [-2.0, 1.0]])]
    step, got = train(dense, tf.Variable(tf.ones([2, 2])))
    ops = [op.type for op in step.get_concrete_function(dense[0]).graph.get_operations()]
    assert "ResourceApplyMomentum" in ops
    want, accum = np.ones([2, 2]), np.zeros([2, 2])
    for g in dense:
        accum = 0.9 * accum + g.numpy()
        want = want - 0.1 * accum
    np.testing.assert_allclose(got, want, rtol=1e-6)
    sparse = [tf.IndexedSlices(g, tf.constant([0, 1]), tf.constant([2, 2])) for g in dense]
    _, got_sparse = train(sparse, tf.Variable(tf.ones([2, 2])))
    np.testing.assert_allclose(got_sparse, want, rtol=1e-6)


def test_gradient_multipliers_double_biases_and_boost_last_layers():
    import keras

    inp = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="features")
    logits = keras.layers.Dense(2, name="logits.semantic")
    keras.Model(inp, logits(hidden(inp)))
    variables = hidden.trainable_weights + logits.trainable_weights
    mult = optimizers.gradient_multipliers(variables, [logits], 10.0)
    # features/kernel: 1 (absent), features/bias: 2, logits/kernel: 10, logits/bias: 20.
    assert mult == {1: 2.0, 2: 10.0, 3: 20.0}
