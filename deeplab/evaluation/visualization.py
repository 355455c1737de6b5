"""Visualization of predictions (vis.py): colour label maps, overlays, side-by-side figures,
raw label PNGs (Cityscapes train ids converted to label ids)."""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import numpy as np

from deeplab.evaluation import colormaps

# Cityscapes: train ids 0..18 -> the official label ids (the evaluation server's format).
# fmt: off
CITYSCAPES_TRAIN_ID_TO_LABEL_ID = (
    7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33,
)
# fmt: on


def train_id_to_label_id(prediction, table: Sequence[int] = CITYSCAPES_TRAIN_ID_TO_LABEL_ID):
    """Maps train ids to label ids (Cityscapes by default); uint8 array of the same shape."""
    prediction = np.asarray(prediction)
    lookup = np.asarray(table, np.int64)
    if prediction.size and (prediction.min() < 0 or prediction.max() >= len(lookup)):
        raise ValueError(
            f"train ids must lie in [0, {len(lookup)}), got "
            f"[{prediction.min()}, {prediction.max()}]"
        )
    return lookup[prediction.astype(np.int64)].astype(np.uint8)


def save_png(array, path: str) -> None:
    """Saves a uint8 [H, W] (single channel) or [H, W, 3] array as PNG."""
    from PIL import Image

    array = np.asarray(array)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path, format="PNG")


def save_side_by_side(
    path: str,
    image,
    prediction_color,
    label_color=None,
    overlay=None,
    *,
    prediction=None,
    label=None,
    colormap=None,
    class_names=None,
    title: Optional[str] = None,
) -> None:
    """A matplotlib figure: image | ground truth (if any) | prediction | overlay, with a legend
    of the classes that occur in the prediction or the ground truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    panels = [("image", image)]
    if label_color is not None:
        panels.append(("ground truth", label_color))
    panels.append(("prediction", prediction_color))
    if overlay is not None:
        panels.append(("overlay", overlay))
    height, width = np.asarray(image).shape[:2]
    panel_w = 3.2
    panel_h = max(1.5, panel_w * height / max(width, 1))
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_w * len(panels), panel_h + 0.9))
    for ax, (name, array) in zip(np.atleast_1d(axes), panels):
        ax.imshow(np.asarray(array, np.uint8))
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if colormap is not None and prediction is not None:
        present = set(np.unique(np.asarray(prediction)).tolist())
        if label is not None:
            lab = np.asarray(label)
            limit = len(class_names) if class_names else len(colormap)
            present |= set(np.unique(lab[(lab >= 0) & (lab < limit)]).tolist())
        handles = []
        for c in sorted(present):
            if 0 <= c < len(colormap):
                name = class_names[c] if class_names and c < len(class_names) else str(c)
                handles.append(Patch(color=np.asarray(colormap[c]) / 255.0, label=name))
        if handles:
            fig.legend(
                handles=handles,
                loc="lower center",
                ncol=min(len(handles), 6),
                fontsize=7,
                frameon=False,
            )
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_visualization(
    output_dir: str,
    index: int,
    image,
    prediction,
    label=None,
    *,
    colormap,
    class_names=None,
    ignore_label: Optional[int] = None,
    num_classes: Optional[int] = None,
    alpha: float = 0.5,
    save_figure: bool = True,
    image_name: Optional[str] = None,
) -> Dict[str, str]:
    """Writes `%06d_image.png`, `%06d_prediction.png` (colour), `%06d_overlay.png` and, with
    `save_figure`, `%06d_figure.png` (side by side with the ground truth) into `output_dir`.
    Returns {kind: path}."""
    image = np.clip(np.round(np.asarray(image, np.float32)), 0, 255).astype(np.uint8)
    prediction_color = colormaps.colorize(prediction, colormap)
    overlay = colormaps.overlay(image, prediction_color, alpha)
    paths = {
        "image": os.path.join(output_dir, f"{index:06d}_image.png"),
        "prediction": os.path.join(output_dir, f"{index:06d}_prediction.png"),
        "overlay": os.path.join(output_dir, f"{index:06d}_overlay.png"),
    }
    save_png(image, paths["image"])
    save_png(prediction_color, paths["prediction"])
    save_png(overlay, paths["overlay"])
    if save_figure:
        label_color = None
        if label is not None:
            label_color = colormaps.colorize(label, colormap, ignore_label, num_classes)
        paths["figure"] = os.path.join(output_dir, f"{index:06d}_figure.png")
        save_side_by_side(
            paths["figure"],
            image,
            prediction_color,
            label_color,
            overlay,
            prediction=prediction,
            label=None if label is None else np.asarray(label).squeeze(),
            colormap=colormap,
            class_names=class_names,
            title=image_name,
        )
    return paths
