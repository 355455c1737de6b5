"""The dense prediction cell (DPC) built from the official JSON cell description.

A cell description (official `core/dense_prediction_cell.py`) is a JSON list of operations,
built in order as `meta_architecture/branch0`, `branch1`, ...; each takes as `input` the
backbone features (-1) or the output of an earlier branch (its index):

- `{"op": "conv", "kernel": 1}`: 1x1 conv + BN + ReLU, 256 channels;
- `{"op": "conv", "kernel": 3, "rate": [rh, rw]}`: split separable conv (depthwise with the
  atrous rate, which may differ per axis, + BN + ReLU; 1x1 pointwise + BN + ReLU), 256
  channels. Rates are multiplied by `16 // output_stride` (so the cell needs output stride 8
  or 16, as the official code);
- `{"op": "pyramid_pooling", "grid_size": [gh, gw]}`: average pooling over windows of
  `scale_dimension(crop, 1 / (output_stride * grid))`, VALID, stride 1; 1x1 conv + BN + ReLU;
  bilinear resize (align_corners) to the feature size.

All branch outputs are concatenated in order, dropout (keep 0.9) is applied to the
concatenation, and `meta_architecture/concat_projection` (1x1 conv + BN + ReLU) maps it to 256
channels. BatchNorm and initialisers are those of the ASPP (decay 0.9997, epsilon 1e-5).

The official Cityscapes cell ships with the package (deeplab/cells/); the official path
`deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json` resolves to it when no file
exists at that path, so official command lines work unchanged.
"""

from __future__ import annotations

from typing import Sequence

import keras

from deeplab.modeling.cell_description import (  # noqa: F401 (the description API, re-exported)
    FLAG,
    OFFICIAL_CELLS_DIR,
    OPERATIONS,
    PACKAGED_CELLS_DIR,
    CellOperation,
    check_cell,
    load_cell,
    packaged_cells,
    parse_cell,
    rate_multiplier,
    resolve_cell_path,
)
from deeplab.modeling.layers import (
    ConvStyle,
    ImagePooling,
    ResizeBilinear,
    conv_bn,
    layer_name,
    scale_dimension,
    split_separable_conv,
)

SCOPE = "meta_architecture"
CELL_FILTERS = 256  # official reduction_size
CONCAT_FILTERS = 256  # official concat_channels
DROPOUT_RATE = 0.1  # official dropout_keep_prob 0.9 on the concatenated features


def dense_prediction_cell(
    features, cell: Sequence[CellOperation], style: ConvStyle, *, output_stride: int, crop_size=None
):
    """Builds the cell on the backbone features; returns the 256-channel projection.

    `crop_size` (H, W) sets the pyramid-pooling windows as the official image-pooling crop size
    does; None pools globally (only for grid 1x1, where that equals the official graph).
    """
    check_cell(cell, output_stride, crop_size)
    multiplier = rate_multiplier(output_stride)
    branches = []
    for index, operation in enumerate(cell):
        scope = f"{SCOPE}/branch{index}"
        x = features if operation.input < 0 else branches[operation.input]
        if operation.op == "pyramid_pooling":
            pool = None
            if crop_size is not None:
                pool = tuple(
                    scale_dimension(c, 1.0 / (output_stride * g))
                    for c, g in zip(crop_size, operation.grid_size)
                )
            pooled = ImagePooling(pool, name=layer_name(scope + "/pool"))(x)
            pooled = conv_bn(pooled, CELL_FILTERS, 1, scope, style)
            branches.append(ResizeBilinear(name=layer_name(scope + "/resize"))([pooled, x]))
        elif operation.kernel == (1, 1):
            branches.append(conv_bn(x, CELL_FILTERS, 1, scope, style))
        else:
            rate = (operation.rate[0] * multiplier, operation.rate[1] * multiplier)
            branches.append(
                split_separable_conv(
                    x, CELL_FILTERS, scope, style, rate=rate, kernel_size=operation.kernel
                )
            )
    x = branches[0]
    if len(branches) > 1:
        x = keras.layers.Concatenate(name=layer_name(SCOPE + "/concat"))(branches)
    x = keras.layers.Dropout(DROPOUT_RATE, name=layer_name(SCOPE + "/concat_projection_dropout"))(x)
    return conv_bn(x, CONCAT_FILTERS, 1, SCOPE + "/concat_projection", style)
