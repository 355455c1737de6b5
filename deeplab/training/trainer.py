"""The training loop: one code path for every tf.distribute strategy.

`train(TrainConfig(...))` builds the strategy, the input pipeline
(`strategy.distribute_datasets_from_function`, the global batch split over the replicas),
the model and optimizer under the strategy scope, restores the latest checkpoint of
`train_logdir` (or initialises from `tf_initial_checkpoint`), and runs a custom `tf.function`
train step until `training_number_of_steps`.

Loss and gradient (matching single-device official training): every replica computes
the sum of its weighted pixel losses and how many pixels it counts; the cross-entropy is that
sum divided by the count over the *whole global batch* (all-reduced), and the regularisation
loss (`model.losses`, the official L2 terms) is divided by the number of replicas. The
optimizer all-reduces (sums) the replica gradients, so the update is the gradient of
`CE(global batch) + L2`, whatever the number of replicas. (With top-k mining each replica
picks the top k of its own pixels.) To keep gradient magnitudes float16-friendly and the step
XLA-compilable, each replica differentiates its locally normalised loss and the L2 term
separately, then rescales by `local_count / global_count` outside the compiled part.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Dict, Optional, Sequence

import keras
import tensorflow as tf
from absl import logging

from deeplab.checkpoints import polling as checkpoint_polling
from deeplab.checkpoints import run_options
from deeplab.data.config import DataConfig
from deeplab.export import qat
from deeplab.modeling.options import ModelOptions
from deeplab.training import (
    checkpointing,
    distribute,
    logdir_lock,
    optimizers,
    pointwise_matmul,
    schedules,
    summaries,
)
from deeplab.training import losses as losses_lib

MIXED_PRECISION = ("none", "float16", "bfloat16")
# A resumed run whose loss or weights are not finite within this many steps of the checkpoint
# it started from falls back to the checkpoint before it (down to the initial weights).
FALLBACK_STEPS = 10


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped without saving."""


class BadDataError(RuntimeError):
    """A bad training example stopped the run (after saving its progress); the message names
    the example's file, the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs (field names are the official flag names), validated
    when it is made. `data` is the training input pipeline (`is_training=True`); its class
    count is the model's."""

    train_logdir: str
    model_options: ModelOptions
    data: DataConfig
    # Learning rate and optimizer.
    learning_rate: schedules.LearningRateConfig = dataclasses.field(
        default_factory=schedules.LearningRateConfig
    )
    optimizer: str = "momentum"
    momentum: float = 0.9
    adam_learning_rate: float = 1e-3
    adam_epsilon: float = 1e-8
    # Initialisation and last layers.
    tf_initial_checkpoint: Optional[str] = None
    initialize_last_layer: bool = True
    last_layers_contain_logits_only: bool = False
    last_layer_gradient_multiplier: float = 1.0
    # Loss.
    top_k_percent_pixels: float = 1.0
    hard_example_mining_step: int = 0
    label_weights: losses_lib.LabelWeights = None
    # Logging and checkpoints.
    log_steps: int = 10
    save_interval_steps: int = 0
    save_interval_secs: int = 1200
    max_checkpoints_to_keep: int = 5
    save_summaries_images: bool = False
    save_summaries_secs: int = 600
    # A profiler trace of PROFILE_STEPS steps (after 2 warm-up steps) goes here.
    profile_logdir: Optional[str] = None
    # Execution.
    strategy: str = "default"
    tpu: Optional[str] = None
    # --strategy=multi_worker: how long to wait for the other workers to connect.
    worker_connect_timeout_secs: float = 600
    mixed_precision: str = "none"
    jit_compile: bool = False
    # 1x1 convs traced as MatMuls in the training step (same sums; faster on CPU).
    pointwise_convs_as_matmul: bool = True
    # Quantization-aware training from this global step on (< 0: float training).
    quantize_delay_step: int = -1

    def __post_init__(self):
        if self.data.num_classes != self.model_options.num_classes:
            # Labels are checked against the model's class count.
            data = self.data.replace(num_classes=self.model_options.num_classes)
            object.__setattr__(self, "data", data)
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the offending flag."""
        if not self.train_logdir:
            raise ValueError("--train_logdir is required")
        if not self.data.is_training:
            raise ValueError("TrainConfig.data must be a training DataConfig (is_training=True)")
        stride = self.model_options.output_stride
        if min(self.data.crop_size) <= stride:
            raise ValueError(
                f"--train_crop_size={','.join(map(str, self.data.crop_size))} must be larger "
                f"than --output_stride={stride} on both sides (e.g. {4 * stride + 1})"
            )
        if self.optimizer not in optimizers.OPTIMIZERS:
            raise ValueError(
                f"--optimizer={self.optimizer!r} is not one of {optimizers.OPTIMIZERS}"
            )
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"--momentum={self.momentum} must be in [0, 1]")
        if self.adam_learning_rate <= 0:
            raise ValueError(f"--adam_learning_rate={self.adam_learning_rate} must be > 0")
        if not 0.0 < self.top_k_percent_pixels <= 1.0:
            raise ValueError(
                f"--top_k_percent_pixels={self.top_k_percent_pixels} must be in (0, 1]"
            )
        if self.hard_example_mining_step < 0:
            raise ValueError(
                f"--hard_example_mining_step={self.hard_example_mining_step} must be >= 0"
            )
        if self.last_layer_gradient_multiplier < 0:
            raise ValueError(
                f"--last_layer_gradient_multiplier="
                f"{self.last_layer_gradient_multiplier} must be >= 0"
            )
        if self.log_steps < 1:
            raise ValueError(f"--log_steps={self.log_steps} must be >= 1")
        if self.save_interval_steps < 0 or self.save_interval_secs < 0:
            raise ValueError("--save_interval_steps and --save_interval_secs must be >= 0")
        if self.max_checkpoints_to_keep < 1:
            raise ValueError(
                f"--max_checkpoints_to_keep={self.max_checkpoints_to_keep} must be >= 1"
            )
        if self.worker_connect_timeout_secs <= 0:
            raise ValueError(
                f"--worker_connect_timeout_secs={self.worker_connect_timeout_secs} must be > 0"
            )
        if self.strategy not in distribute.STRATEGIES:
            raise ValueError(f"--strategy={self.strategy!r} is not one of {distribute.STRATEGIES}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"--mixed_precision={self.mixed_precision!r} is not one of {MIXED_PRECISION}"
            )
        if isinstance(self.label_weights, (list, tuple)):
            losses_lib.parse_label_weights(self.label_weights, self.model_options.num_classes)
        variant = self.model_options.model_variant
        if self.quantize_delay_step >= 0 and variant not in qat.SUPPORTED_VARIANTS:
            raise ValueError(
                f"--quantize_delay_step={self.quantize_delay_step} (quantization-aware "
                f"training) supports --model_variant={'/'.join(qat.SUPPORTED_VARIANTS)} "
                f"(the official quantized models), not {variant}"
            )
        if self.quantize_delay_step >= 0 and self.mixed_precision != "none":
            raise ValueError(
                f"--quantize_delay_step={self.quantize_delay_step} (quantization-aware "
                f"training) runs in float32 and does not combine with "
                f"--mixed_precision={self.mixed_precision}"
            )


def _make_dataset_fn(config: TrainConfig):
    from deeplab.data import pipeline

    def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        return pipeline.build_dataset(config.data, input_context)

    return dataset_fn


def _set_precision_policy(mixed_precision: str) -> None:
    policy = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[
        mixed_precision
    ]
    keras.mixed_precision.set_global_policy(policy)


def _initialize_from_checkpoint(model, config: TrainConfig) -> None:
    """Official `get_model_init_fn`: only when the log dir holds no checkpoint of its own."""
    from deeplab.checkpoints import official as checkpoints
    from deeplab.modeling import model as model_lib

    exclude: Sequence[str] = ()
    if not config.initialize_last_layer:
        exclude = (
            (model_lib.LOGITS_SCOPE,)
            if config.last_layers_contain_logits_only
            else model_lib.LAST_LAYER_SCOPES
        )
    report = checkpoints.load_checkpoint(
        model, config.tf_initial_checkpoint, exclude_scopes=exclude
    )
    logging.info(
        "Initialised from %s: %d variables loaded, %d skipped",
        config.tf_initial_checkpoint,
        len(report.loaded),
        len(report.skipped),
    )


def _mean_aggregated_statistics(next_creator, **kwargs):
    """Creates non-trainable model variables (BatchNorm moving statistics) with MEAN aggregation.

    Keras creates them unaggregated, so under MirroredStrategy / MultiWorkerMirroredStrategy
    every replica would update its own copy from its own batch and the copies (and workers)
    would drift apart. With MEAN, each update is averaged over the replicas and all copies
    stay identical.
    """
    dtype = kwargs.get("dtype")
    floating = dtype is not None and tf.as_dtype(dtype).is_floating
    if (
        floating
        and not kwargs.get("trainable", True)
        and kwargs.get("aggregation") in (None, tf.VariableAggregation.NONE)
    ):
        kwargs["aggregation"] = tf.VariableAggregation.MEAN
    return next_creator(**kwargs)


def _all_finite(tensors) -> tf.Tensor:
    """True when every value of every (non-None) tensor is finite."""
    checks = [tf.reduce_all(tf.math.is_finite(t)) for t in tensors if t is not None]
    return tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)


def _switch_at_quantization_delay(forward_backward, delay, trainable):
    """`forward_backward` (images, labels, step) -> (ce, count, reg, ce_grads, reg_grads,
    correct, valid) under one `tf.cond` on the quantization delay: each side traced with the
    model float or fake-quantized throughout (`qat.QuantizationDelay.traced_as`), instead of a
    `tf.cond` per layer and its gradient. The same values; a few times faster to trace.

    A `tf.cond` cannot return None, so gradients that are None (variables a loss does not reach)
    travel as zeros and are None again after it: the same variables on both sides."""
    missing = {}

    def side(on, images, labels, step):
        def run():
            with delay.traced_as(on):
                out = list(forward_backward(images, labels, step))
            missing[on] = [[g is None for g in grads] for grads in out[3:5]]
            for i in (3, 4):
                out[i] = [tf.zeros_like(v) if g is None else g for g, v in zip(out[i], trainable)]
            return tuple(out)

        return run

    def switched(images, labels, step):
        out = tf.cond(
            delay.is_on(), side(True, images, labels, step), side(False, images, labels, step)
        )
        if missing[True] != missing[False]:
            raise ValueError("the float and the fake-quantized step train different variables")
        out = list(out)
        for i, none in zip((3, 4), missing[True]):
            out[i] = [None if is_none else g for g, is_none in zip(out[i], none)]
        return tuple(out)

    return switched


def _apply_if(optimizer, condition, grads, variables) -> None:
    """`optimizer.apply_gradients(zip(grads, variables))` only where `condition` (the same on
    every replica) holds, called from a replica context.

    Where the strategy updates variables through `merge_call` (mirrored, multi-worker), the
    condition is taken in the cross-replica context: a `tf.cond` in a replica context must not
    have a branch that calls `merge_call` (the pattern of Keras' LossScaleOptimizer).
    """

    def apply(grads, variables):
        optimizer.apply_gradients(list(zip(grads, variables)))
        return tf.constant(True)

    def skip():
        return tf.constant(False)

    if tf.__internal__.distribute.strategy_supports_no_merge_call():
        tf.cond(condition, lambda: apply(grads, variables), skip)
        return

    def cross_replica(distribution, condition, grads, variables):
        def apply_on_replicas():
            distribution.extended.call_for_each_replica(apply, args=(grads, variables))
            return tf.constant(True)

        first = distribution.experimental_local_results(condition)[0]
        tf.cond(first, apply_on_replicas, skip)

    tf.distribute.get_replica_context().merge_call(
        cross_replica, args=(condition, grads, variables)
    )


def _first_non_finite(variables) -> Optional[str]:
    """The name of the first floating-point variable holding a NaN or inf, else None."""
    floating = [v for v in variables if tf.as_dtype(v.dtype).is_floating]
    if not floating:
        return None
    finite = tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in floating]).numpy()
    bad = [v.path if hasattr(v, "path") else v.name for v, ok in zip(floating, finite) if not ok]
    return bad[0] if bad else None


class Trainer:
    """Builds everything for one run; `run()` trains to the final step."""

    def __init__(
        self,
        config: TrainConfig,
        strategy: Optional[tf.distribute.Strategy] = None,
        dataset_fn=None,
        model_fn=None,
    ):
        self.config = config
        if config.data.seed is not None:
            keras.utils.set_random_seed(config.data.seed)
        _set_precision_policy(config.mixed_precision)
        self.strategy = strategy or distribute.create_strategy(
            config.strategy, config.tpu, config.worker_connect_timeout_secs
        )
        self.is_chief = distribute.is_chief(self.strategy)
        # Before anything slow, so that a second trainer on the same log dir stops at once.
        self.lock = logdir_lock.LogdirLock(config.train_logdir)
        if self.is_chief:
            self.lock.acquire()
        try:
            self._build(config, dataset_fn, model_fn)
        except BaseException:
            self.lock.release()  # e.g. a full disk stopping the event writer
            raise

    def _build(self, config: TrainConfig, dataset_fn, model_fn) -> None:
        """Everything of the run but the lock: pipeline, model, optimizer, checkpoint, writer."""
        self.num_replicas = self.strategy.num_replicas_in_sync
        self._fallbacks, self._initial_state, self._fallback_until = [], None, -1
        if config.data.batch_size % self.num_replicas:
            raise ValueError(
                f"--train_batch_size={config.data.batch_size} must be divisible "
                f"by the number of replicas ({self.num_replicas})"
            )
        self.num_classes = config.model_options.num_classes
        self.ignore_label = config.data.ignore_label
        self.dataset_name = config.data.dataset_name
        self.lr_config = config.learning_rate
        self.last_step = self.lr_config.training_number_of_steps

        dataset_fn = dataset_fn or _make_dataset_fn(config)
        self.dataset = self.strategy.distribute_datasets_from_function(dataset_fn)

        from deeplab.modeling import model as model_lib

        with self.strategy.scope():
            with tf.variable_creator_scope(_mean_aggregated_statistics):
                self.model = (model_fn or model_lib.build_deeplab_from_options)(
                    config.model_options
                )
                # The model a step runs: the float one, or its fake-quantized twin (same
                # variables plus the activation ranges) for quantization-aware training.
                self.step_model = self.model
                if config.quantize_delay_step >= 0:
                    self.step_model = qat.quantize_model(
                        self.model, config.quantize_delay_step, step=lambda: self.global_step
                    )
            self.global_step = tf.Variable(
                0,
                dtype=tf.int64,
                trainable=False,
                name="global_step",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            schedule = schedules.OfficialSchedule(self.lr_config)
            self.learning_rate_fn = lambda: schedule(self.global_step)
            self.optimizer = optimizers.build_optimizer(
                config.optimizer,
                self.learning_rate_fn,
                momentum=config.momentum,
                adam_learning_rate=config.adam_learning_rate,
                adam_epsilon=config.adam_epsilon,
                loss_scale=config.mixed_precision == "float16",
            )
            self.optimizer.build(self.model.trainable_variables)
        self.loss_scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)

        self.trainable = list(self.model.trainable_variables)
        self.multipliers = optimizers.gradient_multipliers(
            self.trainable,
            model_lib.last_layers(self.model, config.last_layers_contain_logits_only),
            config.last_layer_gradient_multiplier,
        )

        self.ckpt = checkpointing.TrainCheckpoint(
            config.train_logdir,
            model=self.model,
            optimizer=self.optimizer,
            step=self.global_step,
            strategy=self.strategy,
            max_to_keep=config.max_checkpoints_to_keep,
            quantizers=(
                None if self.step_model is self.model else qat.quantizer_checkpoint(self.step_model)
            ),
        )
        self.writer = summaries.SummaryWriter(
            config.train_logdir if self.is_chief else None,
            dataset_name=config.data.dataset_name,
            num_classes=self.num_classes,
            ignore_label=self.ignore_label,
        )
        self._train_step = self._make_train_step()
        predict = lambda images: tf.argmax(  # noqa: E731
            self.step_model(images, training=False), axis=-1, output_type=tf.int32
        )
        # Through strategy.run so that it also works where the model must run on replicas (TPU).
        self._predict = tf.function(
            lambda images: self.strategy.run(predict, args=(images,)), autograph=False
        )

    # ---------------------------------------------------------------- the step

    def current_learning_rate(self) -> float:
        if self.config.optimizer == "adam":
            return float(self.config.adam_learning_rate)
        return float(schedules.learning_rate_at(self.lr_config, self.global_step))

    def _make_train_step(self):
        config = self.config
        model, trainable = self.step_model, self.trainable
        num_replicas = float(self.num_replicas)
        num_classes, ignore_label = self.num_classes, self.ignore_label
        upsample = config.model_options.upsample_logits

        def forward_backward(images, labels, step):
            with tf.GradientTape(persistent=True) as tape:
                with pointwise_matmul.pointwise_convs_as_matmul(config.pointwise_convs_as_matmul):
                    logits = model(images, training=True)
                logits = tf.cast(logits, tf.float32)
                ce_sum, count = losses_lib.cross_entropy_sum_and_count(
                    logits,
                    labels,
                    num_classes=num_classes,
                    ignore_label=ignore_label,
                    label_weights=config.label_weights,
                    upsample_logits=upsample,
                    top_k_percent_pixels=config.top_k_percent_pixels,
                    hard_example_mining_step=config.hard_example_mining_step,
                    step=step,
                )
                local_ce = losses_lib.normalize(ce_sum, count)
                reg_terms = model.losses
                reg = (
                    tf.add_n([tf.cast(r, tf.float32) for r in reg_terms])
                    if reg_terms
                    else tf.constant(0.0)
                )
                ce_target, reg_target = local_ce, reg
                if self.loss_scaled:
                    ce_target = self.optimizer.scale_loss(ce_target)
                    reg_target = self.optimizer.scale_loss(reg_target)
            ce_grads = tape.gradient(ce_target, trainable)
            reg_grads = (
                tape.gradient(reg_target, trainable) if reg_terms else [None] * len(trainable)
            )
            del tape
            # Pixel accuracy on the counted (non-ignored) pixels.
            matched_logits, matched_labels = losses_lib._match_sizes(logits, labels, upsample)
            flat_labels = tf.reshape(tf.cast(matched_labels, tf.int32), [-1])
            preds = tf.reshape(tf.argmax(matched_logits, axis=-1, output_type=tf.int32), [-1])
            valid = tf.not_equal(flat_labels, ignore_label)
            correct = tf.reduce_sum(
                tf.cast(tf.logical_and(valid, tf.equal(preds, flat_labels)), tf.float32)
            )
            valid_count = tf.reduce_sum(tf.cast(valid, tf.float32))
            return local_ce, count, reg, ce_grads, reg_grads, correct, valid_count

        delay = getattr(model, "quantization_delay", None)
        if delay is not None and delay.switches:
            forward_backward = _switch_at_quantization_delay(forward_backward, delay, trainable)
        if config.jit_compile:
            forward_backward = tf.function(forward_backward, jit_compile=True, autograph=False)

        def replica_step(batch, step):
            images = tf.cast(batch["image"], tf.float32)
            labels = batch["label"]
            local_ce, count, reg, ce_grads, reg_grads, correct, valid = forward_backward(
                images, labels, step
            )
            ctx = tf.distribute.get_replica_context()
            # Checked before the update: a non-finite loss or gradient on any replica skips the
            # update everywhere (float16: the loss-scale optimizer skips non-finite gradients
            # itself). One all-reduce carries the pixel count and the replicas' verdicts.
            local_ok = tf.logical_and(tf.math.is_finite(local_ce), tf.math.is_finite(reg))
            if not self.loss_scaled:
                local_ok = tf.logical_and(local_ok, _all_finite(list(ce_grads) + list(reg_grads)))
            totals = ctx.all_reduce(
                tf.distribute.ReduceOp.SUM,
                tf.stack([count, 1.0 - tf.cast(local_ok, count.dtype)]),
            )
            global_count, finite = totals[0], tf.equal(totals[1], 0.0)
            # local_ce = ce_sum / count  ->  ce_sum / global_count
            share = tf.where(global_count > 0, count / tf.maximum(global_count, 1e-5), 0.0)
            grads = []
            for i, (g_ce, g_reg) in enumerate(zip(ce_grads, reg_grads)):
                g = None
                if g_ce is not None:
                    g = g_ce * tf.cast(share, g_ce.dtype)
                if g_reg is not None:
                    g_reg = g_reg / num_replicas
                    g = g_reg if g is None else g + g_reg
                if g is not None and i in self.multipliers:
                    g = g * self.multipliers[i]
                grads.append(g)
            kept = [(g, v) for g, v in zip(grads, trainable) if g is not None]
            _apply_if(self.optimizer, finite, [g for g, _ in kept], [v for _, v in kept])
            ce = local_ce * share
            return {
                "ce": ce,
                "reg": reg / num_replicas,
                "correct": correct,
                "valid": valid,
                "finite": tf.cast(finite, tf.float32),
            }

        # No autograph: the step has no data-dependent Python control flow, and converting the
        # model's code would only slow tracing down.
        @tf.function(autograph=False)
        def train_step(batch):
            step = self.global_step.read_value()
            out = self.strategy.run(replica_step, args=(batch, step))
            red = {
                k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in out.items()
            }
            self.global_step.assign_add(1)
            return {
                # 1.0 when the update was applied (loss and gradients finite on every replica).
                "update_applied": red["finite"] / self.num_replicas,
                "total_loss": red["ce"] + red["reg"],
                "losses/cross_entropy": red["ce"],
                "losses/regularization": red["reg"],
                "pixel_accuracy": red["correct"] / tf.maximum(red["valid"], 1.0),
            }

        return train_step

    # ---------------------------------------------------------------- the loop

    def _state_variables(self) -> list:
        """Every variable a checkpoint restores: model, optimizer, step (and QAT ranges)."""
        return list(self.step_model.variables) + list(self.optimizer.variables) + [self.global_step]

    def _restore_or_initialize(self) -> int:
        # The initial state, kept when resuming: the last fallback of a resumed run that
        # diverges again at once (see _fall_back).
        resuming = checkpointing.latest_checkpoint(self.config.train_logdir) is not None
        initial = [v.numpy() for v in self._state_variables()] if resuming else None
        path = self.ckpt.restore_latest()
        if path is not None:
            earlier = checkpointing.all_checkpoints(self.config.train_logdir)
            earlier = list(reversed(earlier[: earlier.index(path)])) if path in earlier else []
            self._fallbacks = earlier + [None]  # None: the initial weights
            self._initial_state = initial
            self._fallback_until = int(self.global_step.numpy()) + FALLBACK_STEPS
        if path is None and self.config.tf_initial_checkpoint:
            _initialize_from_checkpoint(self.model, self.config)
        elif path is not None and self.config.tf_initial_checkpoint:
            logging.info(
                "Ignoring --tf_initial_checkpoint: %s already holds a checkpoint",
                self.config.train_logdir,
            )
        return int(self.global_step.numpy())

    def _write_model_options(self) -> None:
        if self.is_chief:
            run_options.write_model_options(
                self.config.train_logdir,
                self.config.model_options,
                dataset=self.config.data.dataset_name,
                dataset_dir=self.config.data.dataset_dir,
                train_split=self.config.data.split,
                train_crop_size=list(self.config.data.crop_size),
                quantize_delay_step=self.config.quantize_delay_step,
            )

    def _image_summary(self, step: int, batch) -> None:
        local = self.strategy.experimental_local_results(batch)[0]
        images = local["image"][: self.writer.max_images]
        preds = self.strategy.experimental_local_results(self._predict(images))[0]
        self.writer.images(
            step, images.numpy(), local["label"][: self.writer.max_images].numpy(), preds.numpy()
        )

    def _finite_images(self, batch) -> bool:
        """Whether every image of a (distributed) batch is finite."""
        return all(
            bool(tf.reduce_all(tf.math.is_finite(tf.cast(local["image"], tf.float32))))
            for local in self.strategy.experimental_local_results(batch)
        )

    def _fall_back(self, what: str, step: int) -> Optional[int]:
        """For a resumed run that diverges within FALLBACK_STEPS of where it started: restores
        the checkpoint before that one (or, after the oldest, the initial weights), says so in
        a warning line, and returns its step; None when there is nothing to fall back to."""
        if step > self._fallback_until or not self._fallbacks:
            return None
        path = self._fallbacks.pop(0)
        if path is None:
            for variable, value in zip(self._state_variables(), self._initial_state):
                variable.assign(value)
            if self.config.tf_initial_checkpoint:
                _initialize_from_checkpoint(self.model, self.config)
            name = "the initial weights"
        else:
            self.ckpt.checkpoint.restore(path).assert_existing_objects_matched()
            name = path
        start = int(self.global_step.numpy())
        print(
            f"WARNING: {what}, {step - self._fallback_until + FALLBACK_STEPS} step(s) after "
            f"resuming; falling back to {name} (step {start}).",
            file=sys.stderr,
            flush=True,
        )
        self._fallback_until = start + FALLBACK_STEPS
        return start

    def _stop_non_finite(self, what: str, suspect_step: Optional[int] = None) -> None:
        """Raises NonFiniteLossError naming the last good checkpoint (nothing is saved).

        `suspect_step`: the step whose weights gave the non-finite loss or gradients from
        finite inputs; a checkpoint of exactly those weights is not good and is discarded (a
        restart would fail at once).
        """
        self.writer.flush()
        last = checkpointing.latest_checkpoint(self.config.train_logdir)
        if (
            last
            and suspect_step is not None
            and checkpoint_polling.checkpoint_step(last) == suspect_step
        ):
            logging.warning("Discarding %s: its weights give %s", last, what)
            last = self.ckpt.discard(last)
        raise NonFiniteLossError(
            f"{what}; stopping without saving. The last good checkpoint is "
            f"{last or 'none (nothing saved yet)'}. Lower --base_learning_rate or check the "
            "data, then run again to resume from it (a resumed run that diverges again within "
            f"{FALLBACK_STEPS} steps falls back to the checkpoints before it, down to the "
            "initial weights; nothing needs deleting)."
        )

    def _stop_bad_data(self, bad: Exception, step: int, last_saved_step: int) -> None:
        """Saves the progress since the last checkpoint (when the weights are finite), then
        raises BadDataError naming the example and what to do."""
        saved = (
            f"the last checkpoint is {checkpointing.latest_checkpoint(self.config.train_logdir)}"
        )
        # Not with several workers: a save is collective and the others may not stop here.
        alone = distribute.task_info(self.strategy)[0] is None
        if alone and step > last_saved_step and not _first_non_finite(self.model.variables):
            saved = f"its progress is saved in {self.ckpt.save()}"
        self.writer.flush()
        config = self.config
        from deeplab.data.validate import bad_data_advice

        raise BadDataError(
            f"{bad}\nTraining stopped at step {step}; {saved}.\n"
            + bad_data_advice(
                config.data.dataset_name,
                config.data.dataset_dir,
                config.data.split,
                self.num_classes,
            )
        ) from None

    def run(self) -> Dict[str, float]:
        """Trains from the latest checkpoint to `training_number_of_steps`; returns a summary.

        Releases the log dir's lock when it returns or raises."""
        try:
            return self._run()
        finally:
            self.lock.release()

    def _run(self) -> Dict[str, float]:
        config = self.config
        tf.io.gfile.makedirs(config.train_logdir)
        start = self._restore_or_initialize()
        self._write_model_options()
        if start >= self.last_step:
            logging.info(
                "Nothing to do: %s is already at step %d (--training_number_of_steps=%d)",
                config.train_logdir,
                start,
                self.last_step,
            )
            return {"step": start, "steps_run": 0, "already_done": True}
        logging.info(
            "Training %s on %s/%s from step %d to %d: %d replica(s), global batch %d",
            config.model_options.model_variant,
            config.data.dataset_name,
            config.data.split,
            start,
            self.last_step,
            self.num_replicas,
            config.data.batch_size,
        )
        progress = summaries.Progress(start, self.last_step, config.data.batch_size)
        iterator = iter(self.dataset)
        step = start
        last_save_time = time.monotonic()
        last_image_time = -math.inf
        last_saved_step = start
        scalars: Dict[str, float] = {}
        t_begin = time.perf_counter()
        profiler = _StepProfiler(config.profile_logdir, start, self.last_step)
        while step < self.last_step:
            profiler.before_step(step)
            lr = self.current_learning_rate()
            try:
                batch = next(iterator)
            except tf.errors.OpError as err:
                from deeplab.data.decode import bad_example_error  # creates tensors on import

                bad = bad_example_error(err)
                if bad is None:
                    raise
                self._stop_bad_data(bad, step, last_saved_step)
            out = self._train_step(batch)
            step += 1
            scalars = {k: float(v.numpy()) for k, v in out.items()}
            applied = scalars.pop("update_applied")
            if applied < 1.0 or not math.isfinite(scalars["total_loss"]):
                what = (
                    f"Loss is {scalars['total_loss']}"
                    if not math.isfinite(scalars["total_loss"])
                    else "The gradients are not finite"
                )
                suspect = step - 1 if self._finite_images(batch) else None
                back = None if suspect is None else self._fall_back(f"{what} at step {step}", step)
                if back is not None:
                    step = last_saved_step = back
                    progress = summaries.Progress(step, self.last_step, config.data.batch_size)
                    continue
                self._stop_non_finite(
                    f"{what} at step {step} (cross-entropy {scalars['losses/cross_entropy']}, "
                    f"regularization {scalars['losses/regularization']}); the update was not "
                    "applied",
                    suspect_step=suspect,
                )
            scalars["learning_rate"] = lr
            profiler.after_step(step)
            if step % config.log_steps == 0 or step == self.last_step:
                ips = progress.images_per_second(step)
                scalars["images_per_second"] = ips
                progress.log(step, scalars, ips)
                self.writer.scalars(step, scalars)
                if config.save_summaries_images and (
                    time.monotonic() - last_image_time >= config.save_summaries_secs
                    or step == self.last_step
                ):
                    self._image_summary(step, batch)
                    last_image_time = time.monotonic()
            due = (
                config.save_interval_steps and step - last_saved_step >= config.save_interval_steps
            ) or (
                not config.save_interval_steps
                and config.save_interval_secs
                and time.monotonic() - last_save_time >= config.save_interval_secs
            )
            if due or step == self.last_step:
                bad = _first_non_finite(self.model.variables + list(self.optimizer.variables))
                if bad is not None:
                    what = f"Variable {bad} is not finite after step {step}"
                    back = self._fall_back(what, step)
                    if back is not None:
                        step = last_saved_step = back
                        progress = summaries.Progress(step, self.last_step, config.data.batch_size)
                        continue
                    self._stop_non_finite(what)
                path = self.ckpt.save()
                self.writer.flush()
                logging.info("Saved checkpoint %s", path)
                last_saved_step, last_save_time = step, time.monotonic()
        profiler.after_step(self.last_step)
        self.writer.flush()
        elapsed = time.perf_counter() - t_begin
        result = {
            "step": step,
            "steps_run": step - start,
            "already_done": False,
            "seconds": elapsed,
            "images_per_second": (step - start) * config.data.batch_size / max(elapsed, 1e-9),
        }
        # The run's average, not the last logging window's.
        result.update({k: v for k, v in scalars.items() if k != "images_per_second"})
        return result


PROFILE_STEPS = 5


class _StepProfiler:
    """Runs the TensorFlow profiler over PROFILE_STEPS training steps (--profile_logdir),
    starting after 2 warm-up steps (the first traces the step function) when the run is
    long enough."""

    def __init__(self, logdir: Optional[str], start: int, last_step: int):
        self.logdir = logdir
        self.first = start + 2 if last_step - start > 2 else start
        self.last = min(self.first + PROFILE_STEPS, last_step)
        self.active = False

    def before_step(self, step: int) -> None:
        if self.logdir and step == self.first:
            tf.io.gfile.makedirs(self.logdir)
            tf.profiler.experimental.start(self.logdir)
            self.active = True

    def after_step(self, step: int) -> None:
        if self.active and step >= self.last:
            tf.profiler.experimental.stop()
            self.active = False
            logging.info(
                "Profiler trace of steps %d-%d written to %s", self.first + 1, step, self.logdir
            )


def train(config: TrainConfig, **kwargs) -> Dict[str, float]:
    """Runs a training job described by `config` (see `Trainer`)."""
    return Trainer(config, **kwargs).run()
