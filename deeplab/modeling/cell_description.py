"""Cell descriptions of the dense prediction cell (DPC): the official JSON format, parsed and
checked without TensorFlow (model options validate a `--dense_prediction_cell_json` with it).

A cell description (official `core/dense_prediction_cell.py`) is a JSON list of operations;
`deeplab/dense_prediction_cell.py` says what each builds. The official Cityscapes cell ships
with the package (deeplab/cells/); the official path
`deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json` resolves to it when no file
exists at that path, so official command lines work unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional, Sequence, Tuple

FLAG = "--dense_prediction_cell_json"
OPERATIONS = ("conv", "pyramid_pooling")
PACKAGED_CELLS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cells")
OFFICIAL_CELLS_DIR = "deeplab/core"  # where the official code keeps its cell descriptions


@dataclasses.dataclass(frozen=True)
class CellOperation:
    """One parsed operation of a cell description."""

    op: str
    input: int  # -1: the backbone features; else an earlier branch
    kernel: Tuple[int, int] = (1, 1)
    rate: Tuple[int, int] = (1, 1)
    grid_size: Optional[Tuple[int, int]] = None


def packaged_cells() -> Tuple[str, ...]:
    """File names of the cell descriptions shipped with the package."""
    if not os.path.isdir(PACKAGED_CELLS_DIR):
        return ()
    return tuple(sorted(f for f in os.listdir(PACKAGED_CELLS_DIR) if f.endswith(".json")))


def resolve_cell_path(path: str) -> str:
    """The file a `--dense_prediction_cell_json` value names.

    An existing file is used as is; otherwise a packaged cell's name, alone or under the
    official `deeplab/core/` directory, resolves to the packaged file.
    """
    if os.path.isfile(path):
        return path
    normalized = path.replace("\\", "/")
    name = normalized.rsplit("/", 1)[-1]
    official = normalized == name or normalized.endswith(f"{OFFICIAL_CELLS_DIR}/{name}")
    if official and name in packaged_cells():
        return os.path.join(PACKAGED_CELLS_DIR, name)
    raise ValueError(
        f"{FLAG}={path}: no such file; give a JSON cell description file, or one of the "
        f"packaged cells {list(packaged_cells())} (also as {OFFICIAL_CELLS_DIR}/NAME)"
    )


def _pair(value, what: str, where: str) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise ValueError(
            f"{where}: {what!r} must be a positive integer or two positive integers, got {value!r}"
        )
    return int(value[0]), int(value[1])


def parse_cell(description, source: str = "cell") -> Tuple[CellOperation, ...]:
    """Checks and parses a cell description (the JSON list); errors name `source`."""
    if not isinstance(description, list) or not description:
        raise ValueError(f"{FLAG}={source}: expected a non-empty JSON list of operations")
    cell = []
    for index, item in enumerate(description):
        where = f"{FLAG}={source}: operation {index}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a JSON object, got {item!r}")
        op = item.get("op")
        if op not in OPERATIONS:
            raise ValueError(f"{where}: 'op' must be one of {list(OPERATIONS)}, got {op!r}")
        source_index = item.get("input")
        if (
            not isinstance(source_index, int)
            or isinstance(source_index, bool)
            or source_index >= index
        ):
            raise ValueError(
                f"{where}: 'input' must be -1 (the backbone features) or the index of an "
                f"earlier operation (0..{index - 1}), got {source_index!r}"
            )
        source_index = max(source_index, -1)
        if op == "pyramid_pooling":
            if "grid_size" not in item:
                raise ValueError(f"{where}: pyramid_pooling needs 'grid_size' [height, width]")
            grid = _pair(item["grid_size"], "grid_size", where)
            cell.append(CellOperation(op, source_index, grid_size=grid))
            continue
        if "kernel" not in item:
            raise ValueError(f"{where}: conv needs 'kernel' (1, or 3 with 'rate')")
        kernel = _pair(item["kernel"], "kernel", where)
        rate = (1, 1)
        if kernel != (1, 1):
            if "rate" not in item:
                raise ValueError(f"{where}: a {kernel[0]}x{kernel[1]} conv needs 'rate'")
            rate = _pair(item["rate"], "rate", where)
        cell.append(CellOperation(op, source_index, kernel, rate))
    return tuple(cell)


def load_cell(path: str) -> Tuple[CellOperation, ...]:
    """Reads and parses the cell description a `--dense_prediction_cell_json` value names."""
    resolved = resolve_cell_path(path)
    try:
        with open(resolved) as f:
            description = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{FLAG}={path}: not valid JSON ({err})") from None
    except OSError as err:
        raise ValueError(f"{FLAG}={path}: cannot read {resolved} ({err})") from None
    return parse_cell(description, path)


def rate_multiplier(output_stride: int) -> int:
    """The official `conv_rate_multiplier` (16 // output_stride); the cell needs it >= 1."""
    multiplier = 16 // output_stride
    if multiplier < 1:
        raise ValueError(
            f"{FLAG} needs --output_stride 8 or 16 (the cell's rates are multiplied by "
            f"16 // output_stride), got --output_stride={output_stride}"
        )
    return multiplier


def check_cell(cell: Sequence[CellOperation], output_stride: int, crop_size) -> None:
    """Raises ValueError (naming the flag) when the cell cannot be built with these options."""
    rate_multiplier(output_stride)
    for index, operation in enumerate(cell):
        if operation.grid_size not in (None, (1, 1)) and crop_size is None:
            raise ValueError(
                f"{FLAG}: operation {index} (pyramid_pooling, grid_size "
                f"{list(operation.grid_size)}) needs a fixed crop size for its pooling "
                "window: set --image_pooling_crop_size (or train with a fixed crop)"
            )
