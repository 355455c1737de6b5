"""DataConfig: everything `pipeline.build_dataset` needs, validated once when it is made."""

import dataclasses
from typing import Optional, Tuple, Union

DEFAULT_SHUFFLE_BUFFER = 256
EVAL_SIZE_MULTIPLE = 16


class DataConfigError(ValueError):
    """A DataConfig field has a bad value; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise DataConfigError(field, message)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The input pipeline of one split (training or evaluation).

    Fields:
      dataset_name: a descriptor name ('pascal_voc_seg', 'cityscapes', 'ade20k', 'synthetic',
        ...) or 'tfds:NAME'.
      dataset_dir: TFRecord folder, VOC folder, images/+labels/ folder, or the TFDS data_dir
        (see `deeplab.data.pipeline`).
      split: split name, e.g. 'train', 'val', 'train_fine'.
      crop_size: (height, width); an int means a square.
      batch_size: global batch size (per-replica size taken from the input context).
      is_training: augment, shuffle and repeat when True.
      min_scale_factor, max_scale_factor, scale_factor_step_size: random scale.
      min_resize_value, max_resize_value, resize_factor: resize to range.
      keep_aspect_ratio: False resizes to a square (the official flag).
      seed: shuffle / augmentation seed; deterministic=True uses 0 when None.
      deterministic: fixed element order and augmentation (slower). Always on in evaluation,
        which reads shards one after the other.
      cache: False, True (memory) or a file path prefix; caches decoded, validated examples
        before augmentation.
      num_readers: TFRecord shards read in parallel.
      skip_bad_examples: drop bad examples (logged with a count) instead of raising an error
        that names the file.
      repeat: None = forever in training, once in evaluation; or an int count.
      drop_remainder: None = True in training, False in evaluation.
      model_variant: chooses the padding mean pixel (127.5 for ours).
      shuffle_buffer: examples in the shuffle buffer (training).
      eval_size_multiple: evaluation images larger than crop_size are padded to
        crop_size + k * eval_size_multiple (kept whole, never cropped).
      num_classes: the model's class count; label values must lie in 0..num_classes-1 (or be
        the ignore label). None: the dataset's.
    """

    dataset_name: str
    dataset_dir: Optional[str]
    split: str
    crop_size: Union[int, Tuple[int, int]]
    batch_size: int
    is_training: bool
    min_scale_factor: float = 1.0
    max_scale_factor: float = 1.0
    scale_factor_step_size: float = 0.0
    min_resize_value: Optional[int] = None
    max_resize_value: Optional[int] = None
    resize_factor: Optional[int] = None
    keep_aspect_ratio: bool = True
    seed: Optional[int] = None
    deterministic: bool = False
    cache: Union[bool, str] = False
    num_readers: int = 4
    skip_bad_examples: bool = False
    repeat: Optional[int] = None
    drop_remainder: Optional[bool] = None
    model_variant: Optional[str] = None
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER
    eval_size_multiple: int = EVAL_SIZE_MULTIPLE
    num_classes: Optional[int] = None

    def __post_init__(self):
        crop = self.crop_size
        if isinstance(crop, int):
            crop = (crop, crop)
        crop = tuple(crop) if isinstance(crop, (tuple, list)) else (crop,)
        _check(
            len(crop) == 2 and all(isinstance(c, int) and c >= 1 for c in crop),
            "crop_size",
            f"{list(crop)} must be two positive integers (height, width)",
        )
        object.__setattr__(self, "crop_size", tuple(int(c) for c in crop))
        _check(bool(self.dataset_name), "dataset_name", "is required")
        _check(self.batch_size >= 1, "batch_size", f"{self.batch_size} must be >= 1")
        _check(
            0 < self.min_scale_factor <= self.max_scale_factor,
            "min_scale_factor",
            f"{self.min_scale_factor} must be > 0 and <= max_scale_factor "
            f"({self.max_scale_factor})",
        )
        _check(
            self.scale_factor_step_size >= 0,
            "scale_factor_step_size",
            f"{self.scale_factor_step_size} must be >= 0",
        )
        for name in ("min_resize_value", "max_resize_value", "resize_factor"):
            value = getattr(self, name)
            _check(value is None or value >= 1, name, f"{value} must be >= 1")
        _check(
            self.min_resize_value is None
            or self.max_resize_value is None
            or self.max_resize_value >= self.min_resize_value,
            "max_resize_value",
            f"{self.max_resize_value} must be >= min_resize_value ({self.min_resize_value})",
        )
        _check(
            self.num_classes is None or self.num_classes >= 1,
            "num_classes",
            f"{self.num_classes} must be >= 1",
        )
        _check(self.num_readers >= 1, "num_readers", f"{self.num_readers} must be >= 1")
        _check(self.shuffle_buffer >= 1, "shuffle_buffer", f"{self.shuffle_buffer} must be >= 1")
        _check(
            self.eval_size_multiple >= 1,
            "eval_size_multiple",
            f"{self.eval_size_multiple} must be >= 1",
        )

    def resize_and_scale(self) -> dict:
        """The resize-to-range and random-scale fields, as `preprocess` takes them."""
        names = (
            "min_resize_value",
            "max_resize_value",
            "resize_factor",
            "keep_aspect_ratio",
            "min_scale_factor",
            "max_scale_factor",
            "scale_factor_step_size",
        )
        return {name: getattr(self, name) for name in names}

    def replace(self, **changes) -> "DataConfig":
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)
