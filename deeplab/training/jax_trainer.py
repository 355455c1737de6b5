"""Training on Keras's JAX backend with the official semantics of the TensorFlow trainer.

`JaxTrainer(TrainConfig(...)).run()` trains like `deeplab.training.Trainer` does on one device:
the official cross-entropy (ignore label, label weights, top-k hard-pixel mining;
`deeplab.training.losses`) plus the model's L2 terms (`model.losses`, as slim), gradient
multipliers (every bias x2, the last layers x`last_layer_gradient_multiplier`), the official
momentum rule `accum = m * accum + g; w -= lr * accum` with the official learning-rate policy
(`deeplab.training.schedules`, evaluated inside the step), and BatchNorm fine-tuned or frozen as
the model options say. The whole step is one `jax.jit` over `model.stateless_call`.

With more than one JAX device the step runs under `keras.distribution.DataParallel`: the
weights replicated, each batch split over the devices (its BatchNorm statistics are those of
the whole batch, as in single-device training).

Checkpoints are Keras-native, in `train_logdir` (`deeplab.checkpoints.keras_checkpoints`):
`ckpt-<step>.weights.h5` (`model.save_weights`, loadable into the model on any backend; eval.py,
vis.py and export.py read them from `--checkpoint_dir=<train_logdir>`), `ckpt-<step>.state.npz`
(the momentum accumulators and the step) and `checkpoint.json` naming the latest pair; each file
is written under a temporary name and renamed, `checkpoint.json` last, so a run killed at any
moment resumes from the last complete checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Dict, Iterable, Iterator, Optional

import keras
import numpy as np
from absl import logging

from deeplab.checkpoints import run_options
from deeplab.checkpoints.keras_checkpoints import CHECKPOINT_STATE
from deeplab.checkpoints.keras_checkpoints import read_state as latest_checkpoint
from deeplab.training import losses as losses_lib
from deeplab.training import optimizers, schedules
from deeplab.training.trainer import NonFiniteLossError, TrainConfig


def unsupported_feature(config: TrainConfig) -> Optional[str]:
    """The TensorFlow-only feature `config` asks for, named with its flag, or None."""
    if config.strategy != "default":
        return f"--strategy={config.strategy} (tf.distribute)"
    if config.quantize_delay_step >= 0:
        return "--quantize_delay_step (quantization-aware training)"
    if config.mixed_precision == "float16":
        return "--mixed_precision=float16 (loss scaling)"
    if config.optimizer != "momentum":
        return f"--optimizer={config.optimizer}"
    return None


def _atomic_write(path: str, write) -> None:
    """`write(temp_path)`, then rename the temp file to `path` (atomic on POSIX)."""
    folder, name = os.path.split(path)
    temp = os.path.join(folder, f".tmp-{os.getpid()}-{name}")  # same suffix: .weights.h5
    write(temp)
    os.replace(temp, path)


def numpy_batches(config: TrainConfig) -> Iterator[Dict[str, np.ndarray]]:
    """The training pipeline of `config` (tf.data) as numpy batches."""
    from deeplab.data import pipeline

    return pipeline.build_dataset(config.data).as_numpy_iterator()


def make_train_step(model, config: TrainConfig, ignore_label: int, multipliers: Dict[int, float]):
    """The jitted step: (trainable, non_trainable, accumulators, step, images, labels) ->
    (trainable, non_trainable, accumulators, scalars). `step` is the number of updates already
    applied; an update whose loss or gradients are not finite is not applied
    (`scalars["finite"]` is 0). The new weights and accumulators keep the layout of the model's
    variables (replicated under DataParallel), so that the next step's inputs are laid out as
    this step's were and the step compiles once."""
    import jax
    import jax.numpy as jnp

    options = config.model_options
    pixel_options = dict(
        num_classes=options.num_classes,
        ignore_label=ignore_label,
        label_weights=config.label_weights,
        upsample_logits=options.upsample_logits,
        top_k_percent_pixels=config.top_k_percent_pixels,
        hard_example_mining_step=config.hard_example_mining_step,
    )

    def loss_fn(trainable, non_trainable, images, labels, step):
        logits, non_trainable, model_losses = model.stateless_call(
            trainable, non_trainable, images, training=True, return_losses=True
        )
        logits = logits.astype("float32")
        ce = losses_lib.softmax_cross_entropy(logits, labels, step=step, **pixel_options)
        reg = sum((r.astype("float32") for r in model_losses), jnp.float32(0.0))
        return ce + reg, (non_trainable, ce, reg)

    def train_step(trainable, non_trainable, accumulators, step, images, labels):
        (total, (new_non_trainable, ce, reg)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, images, labels, step
        )
        grads = [g * multipliers[i] if i in multipliers else g for i, g in enumerate(grads)]
        finite = jnp.isfinite(total) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in grads]))
        lr = schedules.learning_rate_at(config.learning_rate, step)
        momentum = config.momentum
        new_accumulators = [momentum * a + g.astype(a.dtype) for a, g in zip(accumulators, grads)]
        new_trainable = [w - (lr * a).astype(w.dtype) for w, a in zip(trainable, new_accumulators)]

        scalars = {
            "total_loss": total,
            "losses/cross_entropy": ce,
            "losses/regularization": reg,
            "learning_rate": lr,
            "finite": finite.astype("float32"),
        }
        # One conditional over the whole state rather than a select per variable: the same
        # result, and the step compiles several times faster (780 selects are 780 kernels).
        state = jax.lax.cond(
            finite,
            lambda: (new_trainable, new_non_trainable, new_accumulators),
            lambda: (trainable, non_trainable, accumulators),
        )
        return (*state, scalars)

    trainable = [v.value.sharding for v in model.trainable_variables]
    non_trainable = [v.value.sharding for v in model.non_trainable_variables]
    return jax.jit(train_step, out_shardings=(trainable, non_trainable, trainable, None))


def _data_parallel() -> Optional[object]:
    """keras.distribution.DataParallel over every JAX device when there is more than one."""
    import jax

    devices = jax.devices()
    if len(devices) < 2:
        return None
    return keras.distribution.DataParallel(devices=devices)


def _committed(arrays) -> list:
    """`arrays` committed to their devices, as the step's outputs are: the step's inputs keep
    one placement from the first step on, and it compiles once (not again at the second)."""
    import jax

    return [jax.device_put(a, a.sharding) for a in arrays]


class JaxTrainer:
    """Builds the model and the step of one run on the JAX backend; `run()` trains to the final
    step. `batches`: an iterable of {"image", "label"} numpy batches (default: the tf.data
    pipeline of `config`); `model_fn(model_options)` builds the model."""

    def __init__(self, config: TrainConfig, batches: Optional[Iterable] = None, model_fn=None):
        config.validate()
        backend = keras.backend.backend()
        if backend != "jax":
            raise ValueError(f"JaxTrainer needs KERAS_BACKEND=jax, not {backend}")
        feature = unsupported_feature(config)
        if feature is not None:
            raise ValueError(f"{feature} is not available on the {backend} backend")
        self.config = config
        if config.data.seed is not None:
            keras.utils.set_random_seed(config.data.seed)
        policy = {"none": "float32", "bfloat16": "mixed_bfloat16"}[config.mixed_precision]
        keras.mixed_precision.set_global_policy(policy)
        self.distribution = _data_parallel()
        if self.distribution is not None:
            if config.data.batch_size % len(self.distribution.device_mesh.devices.flat):
                raise ValueError(
                    f"--train_batch_size={config.data.batch_size} must be divisible by the "
                    f"number of devices ({self.distribution.device_mesh.devices.size})"
                )
            keras.distribution.set_distribution(self.distribution)

        from deeplab.modeling import model as model_lib

        self.ignore_label = config.data.ignore_label
        self.model = (model_fn or model_lib.build_deeplab_from_options)(config.model_options)
        self.multipliers = optimizers.gradient_multipliers(
            self.model.trainable_variables,
            model_lib.last_layers(self.model, config.last_layers_contain_logits_only),
            config.last_layer_gradient_multiplier,
        )
        self._batches = batches
        self._step_fn = make_train_step(self.model, config, self.ignore_label, self.multipliers)
        self.step = 0
        self.accumulators = self._placed_as_weights(
            [np.zeros(v.shape, v.dtype) for v in self.model.trainable_variables]
        )

    def _placed_as_weights(self, arrays) -> list:
        """`arrays` committed to the devices, laid out as the trainable weights are (replicated
        under DataParallel), as `_committed`."""
        import jax

        variables = self.model.trainable_variables
        return [jax.device_put(np.asarray(a), v.value.sharding) for a, v in zip(arrays, variables)]

    # ---------------------------------------------------------------- checkpoints

    def save(self) -> str:
        """Writes the checkpoint of the current step (see the module docstring); returns the
        weights path. Keeps the latest `max_checkpoints_to_keep`."""
        logdir = self.config.train_logdir
        os.makedirs(logdir, exist_ok=True)
        name = f"ckpt-{self.step}"
        weights = os.path.join(logdir, name + ".weights.h5")
        state = os.path.join(logdir, name + ".state.npz")
        _atomic_write(weights, self.model.save_weights)
        _atomic_write(
            state,
            lambda p: np.savez(
                open(p, "wb"),
                step=np.int64(self.step),
                **{f"accumulator_{i}": np.asarray(a) for i, a in enumerate(self.accumulators)},
            ),
        )
        previous = self._kept_checkpoints()
        entry = {"step": self.step, "weights": name + ".weights.h5", "state": name + ".state.npz"}
        kept = [c for c in previous if c["step"] != self.step] + [entry]
        kept = kept[-self.config.max_checkpoints_to_keep :]
        text = json.dumps(dict(entry, all=kept), indent=1)
        _atomic_write(os.path.join(logdir, CHECKPOINT_STATE), lambda p: open(p, "w").write(text))
        for old in previous:
            if old not in kept:
                for key in ("weights", "state"):
                    path = os.path.join(logdir, old[key])
                    if os.path.exists(path):
                        os.remove(path)
        return weights

    def _kept_checkpoints(self) -> list:
        latest = latest_checkpoint(self.config.train_logdir)
        return [] if latest is None else list(latest.get("all", []))

    def restore_or_initialize(self) -> int:
        """Restores the latest checkpoint of `train_logdir` (else initialises from
        `tf_initial_checkpoint`, as the TensorFlow trainer); returns the step."""
        logdir = self.config.train_logdir
        latest = latest_checkpoint(logdir)
        if latest is not None:
            self.model.load_weights(os.path.join(logdir, latest["weights"]))
            with np.load(os.path.join(logdir, latest["state"])) as state:
                self.step = int(state["step"])
                self.accumulators = self._placed_as_weights(
                    [state[f"accumulator_{i}"] for i in range(len(self.accumulators))]
                )
            logging.info("Restored %s at step %d", latest["weights"], self.step)
        elif self.config.tf_initial_checkpoint:
            from deeplab.training.trainer import _initialize_from_checkpoint

            _initialize_from_checkpoint(self.model, self.config)
        return self.step

    # ---------------------------------------------------------------- the loop

    def _device_batch(self, batch):
        images = np.asarray(batch["image"], np.float32)
        labels = np.asarray(batch["label"])
        if self.distribution is None:
            return images, labels
        return tuple(
            keras.distribution.distribute_tensor(x, self.distribution.get_data_layout(x.shape))
            for x in (images, labels)
        )

    def train_steps(self, batches: Iterable, num_steps: int) -> Dict[str, float]:
        """Applies `num_steps` updates from `batches` to the model; returns the last scalars.
        Raises NonFiniteLossError (without applying the update) on a non-finite loss."""
        variables = self.model.trainable_variables, self.model.non_trainable_variables
        trainable, non_trainable = (_committed([v.value for v in vs]) for vs in variables)
        accumulators = list(self.accumulators)
        scalars: Dict[str, float] = {}
        iterator = iter(batches)
        try:
            for _ in range(num_steps):
                images, labels = self._device_batch(next(iterator))
                trainable, non_trainable, accumulators, out = self._step_fn(
                    trainable, non_trainable, accumulators, np.int32(self.step), images, labels
                )
                scalars = {k: float(v) for k, v in out.items()}
                if not scalars.pop("finite"):
                    raise NonFiniteLossError(
                        f"Loss is {scalars['total_loss']} or the gradients are not finite at "
                        f"step {self.step + 1}; the update was not applied"
                    )
                self.step += 1
        finally:
            for variable, value in zip(variables[0], trainable):
                variable.assign(value)
            for variable, value in zip(variables[1], non_trainable):
                variable.assign(value)
            self.accumulators = accumulators
        return scalars

    def run(self) -> Dict[str, float]:
        """Trains from the latest checkpoint to `training_number_of_steps`, saving every
        `save_interval_steps` (else `save_interval_secs`) and at the end; returns a summary."""
        from deeplab.training.logdir_lock import LogdirLock

        with LogdirLock(self.config.train_logdir):
            return self._run()

    def _run(self) -> Dict[str, float]:
        config = self.config
        os.makedirs(config.train_logdir, exist_ok=True)
        start = self.restore_or_initialize()
        run_options.write_model_options(
            config.train_logdir,
            config.model_options,
            dataset=config.data.dataset_name,
            dataset_dir=config.data.dataset_dir,
            train_split=config.data.split,
            train_crop_size=list(config.data.crop_size),
        )
        last_step = config.learning_rate.training_number_of_steps
        if start >= last_step:
            return {"step": start, "steps_run": 0, "already_done": True}
        batches = iter(self._batches if self._batches is not None else numpy_batches(config))
        scalars: Dict[str, float] = {}
        began, last_save = time.perf_counter(), time.monotonic()
        while self.step < last_step:
            if config.save_interval_steps:
                chunk = config.save_interval_steps - self.step % config.save_interval_steps
            else:
                chunk = config.log_steps - self.step % config.log_steps
            chunk = min(chunk, last_step - self.step)
            scalars = self.train_steps(batches, chunk)
            logging.info(
                "step %d: %s",
                self.step,
                ", ".join(f"{k}={v:.6g}" for k, v in sorted(scalars.items())),
            )
            due = (config.save_interval_steps and self.step % config.save_interval_steps == 0) or (
                not config.save_interval_steps
                and config.save_interval_secs
                and time.monotonic() - last_save >= config.save_interval_secs
            )
            if due or self.step == last_step:
                logging.info("Saved checkpoint %s", self.save())
                last_save = time.monotonic()
        elapsed = time.perf_counter() - began
        result = {
            "step": self.step,
            "steps_run": self.step - start,
            "already_done": False,
            "seconds": elapsed,
            "images_per_second": (self.step - start) * config.data.batch_size / max(elapsed, 1e-9),
        }
        result.update({k: v for k, v in scalars.items() if math.isfinite(v)})
        return result


def train(config: TrainConfig, **kwargs) -> Dict[str, float]:
    """`JaxTrainer(config, **kwargs).run()`."""
    return JaxTrainer(config, **kwargs).run()
