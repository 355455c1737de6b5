"""Model summary (`python -m deeplab.summary`): per-block table of stride, atrous rate, feature size, channels,
parameters and Mult-Adds of a DeepLab configuration, then totals (`--json` for one object).

Mult-Adds count every multiply-accumulate of the convolutions (standard, atrous, depthwise,
pointwise, logits) plus the bias adds: BatchNorm folds into the convs at inference. The
official graph runs atrous convs (depthwise and standard) through space_to_batch, which adds
padded positions; `madds_tf1_conv_only` reproduces the official conv-only count exactly. The official figures
(TF1 profiler float ops / 2 of the `predict_labels` graph) count more than the model's
arithmetic; `madds_tf1` reproduces them (see `tf1_profiler_flops`).
"""

from __future__ import annotations

from typing import Dict, List

import keras
import numpy as np

from deeplab.modeling.layers import scope_of
from deeplab.modeling.model import backbone_scope, build_deeplab_from_options
from deeplab.modeling.options import ModelOptions

_CONV_TYPES = ("Conv2D", "DepthwiseConv2D")


def layer_madds(layer: keras.layers.Layer) -> int:
    """Multiply-adds of one layer at its (static) output shape."""
    kind = type(layer).__name__
    shape = layer.output.shape
    elements = int(np.prod(shape[1:]))
    if kind == "Conv2D":
        kh, kw, cin, _ = layer.kernel.shape
        return elements * kh * kw * cin + (elements if layer.use_bias else 0)
    if kind == "DepthwiseConv2D":
        kh, kw, _, _ = layer.kernel.shape
        return elements * kh * kw
    return 0


def tf1_atrous_depthwise_outputs(size: int, rate: int, kernel: int) -> int:
    """Output positions (per dimension) the official graph computes for an atrous conv.

    TF1 runs a conv or depthwise conv with rate > 1 through space_to_batch: the SAME-padded
    input is padded further to a multiple of the rate and every batch runs a VALID conv, so it
    computes `rate * (padded / rate - kernel + 1)` positions, a few more than `size` (exactly
    `size` at rate 1). The profiler counts them; this reproduces the official figures exactly.
    """
    padded = size + rate * (kernel - 1)
    padded += (-padded) % rate
    return rate * (padded // rate - kernel + 1)


def official_layer_madds(layer: keras.layers.Layer) -> int:
    """Conv multiply-adds as the official TF1 graph's profiler counts them (no bias adds)."""
    kind = type(layer).__name__
    madds = layer_madds(layer)
    if kind == "Conv2D" and layer.use_bias:
        madds -= int(np.prod(layer.output.shape[1:]))
    rate_h, rate_w = (int(r) for r in layer.dilation_rate) if kind in _CONV_TYPES else (1, 1)
    if max(rate_h, rate_w) > 1:
        h, w, c = layer.output.shape[1:]
        kh, kw = layer.kernel.shape[:2]
        per_position = kh * kw * (1 if kind == "DepthwiseConv2D" else layer.kernel.shape[2])
        return (
            tf1_atrous_depthwise_outputs(h, rate_h, kh)
            * tf1_atrous_depthwise_outputs(w, rate_w, kw)
            * c
            * per_position
        )
    return madds


# Element-wise layers and the float ops per output element the TF1 profiler gives their ops
# (hard swish: x + 3, two products; hard sigmoid: x + 3, one product; sums and products: one).
_ELEMENTWISE_FLOPS = {"HardSwish": 3, "HardSigmoid": 2, "Add": 1, "Multiply": 1, "AddN": 1}


def tf1_profiler_flops(layer: keras.layers.Layer) -> int:
    """Float ops the TF1 profiler counts for the official ops of one layer.

    Registered ops only (Conv2D, DepthwiseConv2dNative, BiasAdd, AddV2, Mul, AvgPool, Mean, ...;
    not BatchNorm, ReLU, resizes, concat, pad). The official graph also builds each kernel's
    random initializer (a product and a sum per weight) and, for conv kernels, the L2
    weight-decay term (L2Loss, 3n - 1, times the decay); the profiler counts them too.
    """
    kind = type(layer).__name__
    if kind in _CONV_TYPES:
        weights = int(np.prod(layer.kernel.shape))
        flops = 2 * official_layer_madds(layer) + 2 * weights
        if kind == "Conv2D":
            flops += 3 * weights
            if layer.use_bias:
                flops += int(np.prod(layer.output.shape[1:]))
        return flops
    if kind in _ELEMENTWISE_FLOPS:
        return _ELEMENTWISE_FLOPS[kind] * int(np.prod(layer.output.shape[1:]))
    if kind == "GlobalAveragePooling2D":
        return int(np.prod(layer.input.shape[1:]))
    if kind == "ImagePooling":
        if layer.pool_size is None:
            return int(np.prod(layer.input.shape[1:]))
        return int(np.prod(layer.pool_size)) * int(np.prod(layer.output.shape[1:]))
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        return int(np.prod(layer.pool_size)) * int(np.prod(layer.output.shape[1:]))
    return 0


def tf1_predict_labels_flops(model: keras.Model, num_classes: int) -> int:
    """Float ops of the official `predict_labels` graph as the TF1 profiler counts them: every
    layer (`tf1_profiler_flops`), the input scaling x * 2/255 - 1, and the softmax (5 per
    element) and argmax of the logits at the input size. Matches the official figures of
    ../shared/reference/facts.json to within 4 float ops."""
    height, width, channels = model.input.shape[1:]
    pixels = int(height) * int(width)
    flops = sum(tf1_profiler_flops(layer) for layer in model.layers)
    flops += 2 * pixels * int(channels)  # Mul, Sub
    flops += 5 * pixels * num_classes + (pixels * num_classes - pixels)  # Softmax, ArgMax
    return int(flops)


def block_of(layer_name: str, model_variant: str) -> str:
    """The table row a layer belongs to: an Xception unit, a MobileNet unit, an ASPP branch…"""
    scope = scope_of(layer_name)
    backbone = backbone_scope(model_variant) + "/"
    if scope.startswith(backbone):
        parts = scope[len(backbone) :].split("/")
        if parts[0] in ("entry_flow", "middle_flow", "exit_flow"):
            depth = 2 if parts[1].startswith("conv") else 3
            return backbone + "/".join(parts[:depth])
        if parts[0].startswith("block"):  # ResNet: one row per bottleneck unit
            return backbone + "/".join(parts[:2])
        return backbone + parts[0]
    parts = scope.split("/")
    depth = 2 if parts[0] in ("decoder", "meta_architecture") else 1
    head = "/".join(parts[:depth])
    for suffix in ("_depthwise", "_pointwise"):
        head = head.replace(suffix, "")
    return head.split(".")[0]


def summarize(options: ModelOptions, crop_size=(513, 513)) -> Dict[str, object]:
    """Per-block rows and totals for `options` at `crop_size` (H, W)."""
    model = build_deeplab_from_options(options, input_size=tuple(crop_size))
    rows: Dict[str, Dict[str, object]] = {}
    for layer in model.layers:
        if not isinstance(
            layer,
            (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.BatchNormalization),
        ):
            continue
        key = block_of(layer.name, options.model_variant)
        row = rows.setdefault(
            key,
            {
                "block": key,
                "stride": 0,
                "rate": (1, 1),
                "size": None,
                "channels": 0,
                "params": 0,
                "madds": 0,
            },
        )
        row["params"] += int(sum(np.prod(w.shape) for w in layer.trainable_weights))
        row["madds"] += layer_madds(layer)
        if type(layer).__name__ in _CONV_TYPES:
            h, w, c = layer.output.shape[1:]
            row["size"], row["channels"] = (h, w), c
            rate = tuple(int(r) for r in layer.dilation_rate)
            if rate[0] * rate[1] > row["rate"][0] * row["rate"][1]:
                row["rate"] = rate
            row["stride"] = _stride(crop_size[0], h)
    table: List[Dict[str, object]] = list(rows.values())
    for row in table:
        row["rate"] = _rate_label(row["rate"])
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(sum(np.prod(w.shape) for w in model.weights))
    return {
        "model_variant": options.model_variant,
        "crop_size": list(crop_size),
        "output_stride": options.output_stride,
        "atrous_rates": list(options.atrous_rates or []),
        "dense_prediction_cell_json": options.dense_prediction_cell_json,
        "decoder_output_stride": options.decoder_output_stride,
        "num_classes": options.num_classes,
        "trainable_params": trainable,
        "total_params": total,
        "madds": int(sum(r["madds"] for r in table)),
        "madds_tf1": tf1_predict_labels_flops(model, options.num_classes) // 2,
        "madds_tf1_conv_only": int(
            sum(
                official_layer_madds(layer)
                for layer in model.layers
                if type(layer).__name__ in _CONV_TYPES
            )
        ),
        "blocks": table,
    }


def _rate_label(rate):
    """A row's atrous rate: an int, or "HxW" when non-square (dense prediction cell convs)."""
    height, width = rate
    return height if height == width else f"{height}x{width}"


def _stride(input_size: int, output_size: int) -> int:
    if output_size <= 1:
        return input_size
    return int(round((input_size - 1) / (output_size - 1)))


def _head(summary: Dict[str, object]) -> str:
    if summary.get("dense_prediction_cell_json"):
        return f"dense prediction cell {summary['dense_prediction_cell_json']}"
    return f"atrous rates {summary['atrous_rates'] or 'none'}"


def format_table(summary: Dict[str, object]) -> str:
    """The human-readable table of `summarize`."""
    header = (
        f"{'block':<58} {'stride':>6} {'rate':>5} {'features':>11} {'ch':>5} "
        f"{'params':>11} {'Mult-Adds':>15}"
    )
    lines = [header, "-" * len(header)]
    for row in summary["blocks"]:
        size = "x".join(str(s) for s in row["size"])
        lines.append(
            f"{row['block']:<58} {row['stride']:>6} {row['rate']!s:>5} {size:>11} "
            f"{row['channels']:>5} {row['params']:>11,} {row['madds']:>15,}"
        )
    lines.append("-" * len(header))
    lines.append(
        f"trainable parameters {summary['trainable_params']:,}; all variables "
        f"{summary['total_params']:,}; Mult-Adds {summary['madds'] / 1e9:.2f}B at "
        f"{summary['crop_size'][0]}x{summary['crop_size'][1]}, output stride "
        f"{summary['output_stride']}, {_head(summary)}, "
        f"decoder stride {summary['decoder_output_stride'] or 'none'}"
    )
    lines.append(
        f"official TF1 profiler count (predict_labels graph, float ops / 2): "
        f"{summary['madds_tf1'] / 1e9:.3f}B; its convs alone: "
        f"{summary['madds_tf1_conv_only'] / 1e9:.3f}B"
    )
    return "\n".join(lines)
