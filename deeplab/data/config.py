"""DataConfig: everything `pipeline.build_dataset` needs, validated and resolved once when it
is made (`build_dataset` only builds)."""

import dataclasses
from typing import Optional, Tuple, Union

from deeplab.data import descriptors

DEFAULT_SHUFFLE_BUFFER = 256
EVAL_SIZE_MULTIPLE = 16


class DataConfigError(ValueError):
    """A DataConfig field has a bad value; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


def dataset_info(dataset_name: str) -> Optional[descriptors.DatasetInfo]:
    """The descriptor of `dataset_name`; None for a TFDS dataset without one (its labels are
    then not range-checked); ValueError naming the known datasets otherwise."""
    try:
        return descriptors.get_dataset_info(dataset_name)
    except ValueError:
        if dataset_name.startswith(descriptors.TFDS_PREFIX):
            return None
        raise


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
        which reads shards one after the other (num_readers 1).
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
      ignore_label: None: the dataset's (255 for an unregistered TFDS dataset).

    The "None: automatic" fields are resolved when the config is made, so a DataConfig holds
    the values the pipeline uses (`replace` keeps them: give the automatic ones again).
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
    ignore_label: Optional[int] = None

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
        self._resolve_defaults()

    def _resolve_defaults(self) -> None:
        """Fills in the automatic ("None") fields from the dataset and the mode."""
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        info = self.dataset_info()
        if self.num_classes is None and info is not None:
            set_("num_classes", info.num_classes)
        if self.ignore_label is None:
            set_("ignore_label", info.ignore_label if info is not None else 255)
        if not self.is_training:
            # Evaluation: every image once, in file order (shard by shard).
            set_("deterministic", True)
            set_("num_readers", 1)
        if self.deterministic and self.seed is None:
            set_("seed", 0)
        if self.repeat is None:
            set_("repeat", -1 if self.is_training else 1)
        if self.drop_remainder is None:
            set_("drop_remainder", self.is_training)

    def dataset_info(self) -> Optional[descriptors.DatasetInfo]:
        """The dataset's descriptor (`dataset_info`)."""
        try:
            return dataset_info(self.dataset_name)
        except ValueError as err:
            raise DataConfigError("dataset_name", str(err)) from None

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
