"""Regenerates the README's pictures (docs/images/) from a training run of the quickstart.

    python datasets/build_synthetic_data.py --output_dir=data/synthetic
    python train.py --train_logdir=runs/demo &
    python eval.py --checkpoint_dir=runs/demo --eval_interval_secs=0 --eval_timeout_secs=300
    python docs/make_figures.py --run_dir=runs/demo

(eval.py alongside train.py evaluates every checkpoint, which gives the mIoU curve points; a
run evaluated once gives one point.) Writes, with the project's own commands and files:
  vis_demo.png          vis.py's figures of the first val images (image, ground truth,
                        prediction, overlay), stacked
  training_curves.png   total loss (train.py's events) and val mIoU (eval.py's events) by step
  confusion_matrix.png  eval.py's confusion matrix of the last evaluated checkpoint
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(script: str, *args: str) -> None:
    """Runs one of the repository's command lines; stops on failure."""
    subprocess.run([sys.executable, os.path.join(ROOT, script), *args], check=True)


def scalars(folder: str, tag: str):
    """(steps, values) of a TensorBoard scalar in the event files directly in `folder`."""
    import tensorflow as tf

    points = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == tag:
                    points[event.step] = float(tf.make_ndarray(value.tensor))
    steps = sorted(points)
    return steps, [points[step] for step in steps]


def plot_curves(run_dir: str, eval_dir: str, path: str) -> None:
    """Total loss and val mIoU against the training step, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss_steps, loss = scalars(run_dir, "total_loss")
    miou_steps, miou = scalars(eval_dir, "eval/miou_1.0_overall")
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(loss_steps, loss, color="tab:blue")
    left.set(xlabel="step", ylabel="total loss", title="training loss (train.py)")
    right.plot(miou_steps, [100 * v for v in miou], "o-", color="tab:green")
    right.set(xlabel="step", ylabel="mIoU %", title="val mIoU (eval.py)", ylim=(0, 100))
    right.set_xlim(left.get_xlim())
    for axis in (left, right):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stack_images(paths, path: str, width: int = 900) -> None:
    """The images of `paths` one under the other, on white, `width` pixels wide, in 256
    colours (a small file for the repository)."""
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in paths]
    images = [
        image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        for image in images
    ]
    width = max(image.width for image in images)
    out = Image.new("RGB", (width, sum(image.height for image in images)), "white")
    top = 0
    for image in images:
        out.paste(image, (0, top))
        top += image.height
    out.quantize(256).save(path, optimize=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run_dir", default="runs/demo", help="the quickstart's training run")
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "docs", "images"))
    parser.add_argument("--num_examples", type=int, default=2, help="val images in vis_demo.png")
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from deeplab.cli import logs

    logs.install()  # before TensorFlow is imported (reading the events)
    eval_dir = os.path.join(args.run_dir, "eval")
    if not os.path.exists(os.path.join(eval_dir, "confusion_matrix.png")):
        command("eval.py", f"--checkpoint_dir={args.run_dir}", "--max_number_of_evaluations=1")
    os.makedirs(args.output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as vis_dir:
        command(
            "vis.py",
            f"--checkpoint_dir={args.run_dir}",
            f"--vis_logdir={vis_dir}",
            f"--num_vis_examples={args.num_examples}",
            "--max_number_of_iterations=1",
        )
        figures = sorted(glob.glob(os.path.join(vis_dir, "segmentation_results", "*_figure.png")))
        stack_images(figures, os.path.join(args.output_dir, "vis_demo.png"))
    plot_curves(args.run_dir, eval_dir, os.path.join(args.output_dir, "training_curves.png"))
    shutil.copyfile(
        os.path.join(eval_dir, "confusion_matrix.png"),
        os.path.join(args.output_dir, "confusion_matrix.png"),
    )
    print(f"Wrote vis_demo.png, training_curves.png, confusion_matrix.png to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
