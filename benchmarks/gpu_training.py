"""GPU figures in one short run: xception_65 OS 16 training at crop 513 in float32,
mixed_float16 and mixed_float16 + XLA, and 513x513 inference; images/s and peak GPU memory.

    python -m benchmarks.gpu_training            # on a machine with one GPU (< 7 minutes)
    python -m benchmarks.gpu_training --smoke    # anywhere: tiny crop, one step per case

Training runs our real train step (`deeplab.training.Trainer`: the official loss and update,
dynamic loss scaling for float16, `jit_compile` for XLA) on synthetic random images and labels
held on the device, so no dataset is needed and the input pipeline is not timed. A case that
runs out of memory is retried with half the batch. Cases left when the time budget
(--budget_s) is spent are reported as skipped. The JSON goes to stdout and, when $OUT is set,
to $OUT/gpu_training.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional

TRAINING_CASES = (
    ("float32", "none", False),
    ("mixed_float16", "float16", False),
    ("mixed_float16_xla", "float16", True),
)
INFERENCE_CASES = (("float32", "float32"), ("mixed_float16", "mixed_float16"))
NUM_CLASSES = 21


def _gpu():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None, "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return "GPU:0", details.get("device_name", "GPU")


def _reset_peak(device: Optional[str]) -> None:
    import tensorflow as tf

    if device:
        tf.config.experimental.reset_memory_stats(device)


def _peak_gib(device: Optional[str]) -> Optional[float]:
    import tensorflow as tf

    if not device:
        return None
    return round(tf.config.experimental.get_memory_info(device)["peak"] / 2**30, 2)


def _model_options(crop: int, variant: str = "xception_65"):
    from deeplab import ModelOptions

    xception = variant.startswith("xception")
    return ModelOptions(
        model_variant=variant,
        num_classes=NUM_CLASSES,
        output_stride=16,
        atrous_rates=(6, 12, 18) if xception else None,
        decoder_output_stride=4 if xception else None,
        crop_size=(crop, crop),
    )


def _synthetic_batch(batch: int, crop: int):
    import tensorflow as tf

    images = tf.random.stateless_uniform([batch, crop, crop, 3], (1, 2), 0.0, 255.0)
    labels = tf.random.stateless_uniform(
        [batch, crop, crop, 1], (3, 4), 0, NUM_CLASSES, dtype=tf.int32
    )
    return {"image": images, "label": labels}


def _time(fn, steps: int, warmup: int) -> Dict[str, float]:
    wall = time.perf_counter()
    fn()
    first = time.perf_counter() - wall
    for _ in range(warmup):
        fn()
    walls = []
    for _ in range(steps):
        wall = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - wall)
    return {"first_call_s": round(first, 2), "step_s_median": statistics.median(walls)}


def train_case(
    precision: str, jit: bool, batch: int, crop: int, steps: int, warmup: int, variant: str
):
    """Times `steps` train steps of the Trainer after `warmup` (and the traced first one)."""
    import tensorflow as tf

    from deeplab.data.config import DataConfig
    from deeplab.training import LearningRateConfig, TrainConfig, Trainer

    data = _synthetic_batch(batch, crop)
    with tempfile.TemporaryDirectory() as logdir:
        config = TrainConfig(
            train_logdir=logdir,
            model_options=_model_options(crop, variant),
            data=DataConfig(
                "pascal_voc_seg", None, "train", (crop, crop), batch, is_training=True, seed=0
            ),
            learning_rate=LearningRateConfig(base_learning_rate=1e-4),
            mixed_precision=precision,
            jit_compile=jit,
        )
        trainer = Trainer(config, dataset_fn=lambda _: tf.data.Dataset.from_tensors(data).repeat())
        batch_iter = iter(trainer.dataset)
        device_batch = next(batch_iter)
        losses: List[float] = []

        def step():
            losses.append(float(trainer._train_step(device_batch)["total_loss"]))

        timing = _time(step, steps, warmup)
        trainer.writer.flush()
        result = {
            **timing,
            "images_per_s": round(batch / timing["step_s_median"], 2),
            "loss_first": losses[0],
            "loss_last": losses[-1],
            "finite": all(map(lambda v: v == v and abs(v) != float("inf"), losses)),
            "logits_dtype": trainer.model.output.dtype,
            "loss_scaled": trainer.loss_scaled,
        }
    return result


def inference_case(policy: str, crop: int, steps: int, warmup: int, variant: str):
    """Times the forward pass at [1, crop, crop, 3] (pre-upsampling logits, as inference)."""
    import keras
    import tensorflow as tf

    from deeplab.modeling.model import build_deeplab_from_options

    keras.mixed_precision.set_global_policy(policy)
    try:
        options = _model_options(crop, variant).replace(crop_size=None, upsample_logits=False)
        model = build_deeplab_from_options(options)
        images = _synthetic_batch(1, crop)["image"]
        predict = tf.function(lambda x: tf.argmax(model(x, training=False), -1))
        timing = _time(lambda: predict(images).numpy(), steps, warmup)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return {**timing, "images_per_s": round(1.0 / timing["step_s_median"], 2)}


def _run_guarded(fn, device, **kwargs):
    import keras
    import tensorflow as tf

    _reset_peak(device)
    try:
        result = fn(**kwargs)
        result["peak_gpu_memory_gib"] = _peak_gib(device)
        return result
    except tf.errors.ResourceExhaustedError as err:
        return {"error": "out of memory", "detail": str(err).splitlines()[0][:200]}
    finally:
        keras.backend.clear_session()
        gc.collect()


def main(argv=None) -> Dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny crop, one step per case")
    parser.add_argument("--crop", type=int, default=513)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    parser.add_argument("--budget_s", type=float, default=300.0, help="start no case after this")
    parser.add_argument("--variant", default="xception_65", help="model variant (tests: smaller)")
    parser.add_argument(
        "--cases",
        default=",".join(
            [c[0] for c in TRAINING_CASES] + [f"inference_{c[0]}" for c in INFERENCE_CASES]
        ),
        help="comma list of the cases to run",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.crop, args.batch, args.steps, args.warmup = 65, 2, 1, 0
    begin = time.perf_counter()
    import tensorflow as tf

    device, device_name = _gpu()
    results: Dict[str, object] = {
        "device": device_name,
        "tensorflow": tf.__version__,
        "model": f"{args.variant} OS16, 21 classes"
        + (", rates 6,12,18, decoder 4" if args.variant.startswith("xception") else ""),
        "crop": args.crop,
        "smoke": args.smoke,
        "training": {},
        "inference": {},
    }

    def out_of_time() -> bool:
        return time.perf_counter() - begin > args.budget_s

    def save() -> str:
        results["total_s"] = round(time.perf_counter() - begin, 1)
        text = json.dumps(results, indent=1, default=str)
        out = os.environ.get("OUT")
        if out:
            with open(os.path.join(out, "gpu_training.json"), "w") as f:
                f.write(text + "\n")
        return text

    cases = set(args.cases.split(","))

    def training(name, precision, jit):
        batch = args.batch
        while True:
            if out_of_time():
                result = {"skipped": "time budget spent"}
                break
            result = _run_guarded(
                train_case,
                device,
                precision=precision,
                jit=jit,
                batch=batch,
                crop=args.crop,
                steps=args.steps,
                warmup=args.warmup,
                variant=args.variant,
            )
            if result.get("error") != "out of memory" or batch == 1:
                break
            batch //= 2
        results["training"][name] = {"batch": batch, "precision": precision, "xla": jit, **result}
        save()

    def inference(name, policy):
        if out_of_time():
            results["inference"][name] = {"skipped": "time budget spent"}
            return
        results["inference"][name] = {
            "batch": 1,
            **_run_guarded(
                inference_case,
                device,
                policy=policy,
                crop=args.crop,
                steps=args.steps,
                warmup=args.warmup,
                variant=args.variant,
            ),
        }
        save()

    # XLA last: its compilation takes longest, and what ran before is saved if it overruns.
    for name, precision, jit in TRAINING_CASES:
        if name in cases and not jit:
            training(name, precision, jit)
    for name, policy in INFERENCE_CASES:
        if f"inference_{name}" in cases:
            inference(name, policy)
    for name, precision, jit in TRAINING_CASES:
        if name in cases and jit:
            training(name, precision, jit)
    print(save())
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
