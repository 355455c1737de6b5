"""build_dataset: one tf.data pipeline for TFRecords, folders and TFDS.

Source selection (``dataset_dir``, ``split``):
  1. ``dataset_name='tfds:NAME'``: TensorFlow Datasets NAME prepared under
     ``dataset_dir`` (its data_dir; None = the TFDS default). Never downloads.
  2. ``dataset_dir`` holds ``{split}-*`` files: official TFRecords.
  3. ``dataset_dir`` is (or holds VOC2012/, VOCdevkit/VOC2012/) a VOC folder.
  4. ``dataset_dir`` holds ``images/`` and ``labels/``.
"""

import os

import tensorflow as tf
from absl import logging

from deeplab.data import decode, descriptors, preprocess, readers

DEFAULT_SHUFFLE_BUFFER = 256
EVAL_SIZE_MULTIPLE = 16


def _resolve_info(dataset_name):
    try:
        return descriptors.get_dataset_info(dataset_name)
    except ValueError:
        if dataset_name.startswith(descriptors.TFDS_PREFIX):
            return None  # An unregistered TFDS dataset: labels are not range-checked.
        raise


def _source(
    dataset_name,
    dataset_dir,
    split,
    info,
    *,
    is_training,
    seed,
    num_readers,
    input_context,
    skip_bad_examples,
    deterministic,
):
    """Returns (dataset, is_decoded, colour_table, sharded) for the data source."""
    if dataset_name.startswith(descriptors.TFDS_PREFIX):
        name = dataset_name[len(descriptors.TFDS_PREFIX) :]
        dataset = readers.tfds_dataset(
            name,
            split,
            data_dir=dataset_dir,
            shuffle_files=is_training,
            seed=seed,
            input_context=input_context,
            label_map=info.tfds_label_map if info else None,
        )
        return dataset, True, None, True
    if not dataset_dir:
        raise ValueError(f"dataset_dir is required for dataset {dataset_name!r}.")
    if not tf.io.gfile.isdir(dataset_dir):
        raise FileNotFoundError(f"dataset_dir {dataset_dir} does not exist.")
    shards = readers.list_tfrecord_split(dataset_dir, split)
    if shards:
        sharded = False
        pipelines = input_context.num_input_pipelines if input_context else 1
        if pipelines > 1 and len(shards) >= pipelines:
            shards = readers.shard_list(shards, input_context)
            sharded = True
        dataset = readers.tfrecord_dataset(
            shards,
            shuffle_files=is_training,
            seed=seed,
            num_readers=num_readers,
            deterministic=deterministic,
        )
        return dataset, False, None, sharded
    voc_root = readers.find_voc_root(dataset_dir)
    if voc_root is not None:
        pairs = readers.list_voc_split(voc_root, split, skip_bad_examples)
    elif tf.io.gfile.isdir(os.path.join(dataset_dir, "images")):
        pairs = readers.list_image_label_split(dataset_dir, split, skip_bad_examples)
    else:
        raise FileNotFoundError(
            f"No data for split {split!r} in {dataset_dir}: expected {split}-* TFRecord shards, a VOC "
            "folder (JPEGImages/, ImageSets/Segmentation/) or images/ + labels/."
        )
    pairs.images = readers.shard_list(pairs.images, input_context)
    pairs.labels = readers.shard_list(pairs.labels, input_context)
    pairs.names = readers.shard_list(pairs.names, input_context)
    # Colour labels (palette PNGs such as VOC SegmentationClass/, or RGB) are
    # mapped back to indices through the dataset palette.
    colour_table = decode.palette_lookup_table(info.palette) if info is not None else None
    return readers.folder_dataset(pairs), False, colour_table, True


def split_size(dataset_name, dataset_dir, split):
    """Number of examples of a split (for progress bars): the descriptor's count for the
    official datasets, else the records of the split's TFRecord shards or its listed folder
    pairs; None when unknown (e.g. TFDS)."""
    info = _resolve_info(dataset_name)
    if info is not None and dataset_name != "synthetic" and info.splits.get(split):
        return int(info.splits[split])
    if dataset_name.startswith(descriptors.TFDS_PREFIX) or not dataset_dir:
        return None
    try:
        shards = readers.list_tfrecord_split(dataset_dir, split)
        if shards:
            return sum(1 for _ in tf.data.TFRecordDataset(shards))
        voc_root = readers.find_voc_root(dataset_dir)
        if voc_root is not None:
            return len(readers.list_voc_split(voc_root, split, True).images)
        if tf.io.gfile.isdir(os.path.join(dataset_dir, "images")):
            return len(readers.list_image_label_split(dataset_dir, split, True).images)
    except (ValueError, OSError, tf.errors.OpError):
        return None
    return None


def build_dataset(
    dataset_name,
    dataset_dir,
    split,
    *,
    crop_size,
    batch_size,
    is_training,
    min_scale_factor=1.0,
    max_scale_factor=1.0,
    scale_factor_step_size=0.0,
    min_resize_value=None,
    max_resize_value=None,
    resize_factor=None,
    keep_aspect_ratio=True,
    seed=None,
    deterministic=False,
    cache=False,
    num_readers=4,
    input_context=None,
    skip_bad_examples=False,
    repeat=None,
    drop_remainder=None,
    model_variant=None,
    shuffle_buffer=DEFAULT_SHUFFLE_BUFFER,
    eval_size_multiple=EVAL_SIZE_MULTIPLE,
    num_classes=None,
):
    """Builds the training or evaluation tf.data pipeline.

    Args:
      dataset_name: a descriptor name ('pascal_voc_seg', 'cityscapes',
        'ade20k', 'synthetic', ...) or 'tfds:NAME'.
      dataset_dir: TFRecord folder, VOC folder, images/+labels/ folder, or the
        TFDS data_dir (see module docstring).
      split: split name, e.g. 'train', 'val', 'train_fine'.
      crop_size: (height, width) or an int.
      batch_size: global batch size (per-replica size taken from input_context).
      is_training: augment, shuffle and repeat when True.
      min_scale_factor, max_scale_factor, scale_factor_step_size: random scale.
      min_resize_value, max_resize_value, resize_factor: resize to range.
      keep_aspect_ratio: False resizes to a square (the official flag).
      seed: shuffle / augmentation seed; deterministic=True uses 0 when None.
      deterministic: fixed element order and augmentation (slower). Always on
        in evaluation, which reads shards one after the other.
      cache: False, True (memory) or a file path prefix; caches decoded,
        validated examples before augmentation.
      num_readers: TFRecord shards read in parallel.
      input_context: tf.distribute.InputContext; shards by file when there are
        at least as many shards as input pipelines, else by element.
      skip_bad_examples: drop bad examples (logged with a count) instead of
        raising an error that names the file.
      repeat: None = forever in training, once in evaluation; or an int count.
      drop_remainder: None = True in training, False in evaluation.
      model_variant: chooses the padding mean pixel (127.5 for ours).
      shuffle_buffer: examples in the shuffle buffer (training).
      eval_size_multiple: evaluation images larger than crop_size are padded to
        crop_size + k * eval_size_multiple (kept whole, never cropped).
      num_classes: the model's class count; label values must lie in
        0..num_classes-1 (or be the ignore label). Default: the dataset's.

    Returns:
      A dataset of dicts: 'image' float32 [B, H, W, 3] (0..255, padding 127.5),
      'label' int32 [B, H, W, 1] (ignore label in padding), 'height', 'width'
      int32 [B] (decoded image size), 'image_name' string [B]. Training: H, W =
      crop_size. Evaluation: H, W = crop_size unless an image of the batch is
      larger; then the batch is padded to that image's valid size.
    """
    if isinstance(crop_size, int):
        crop_size = (crop_size, crop_size)
    crop_height, crop_width = (int(s) for s in crop_size)
    info = _resolve_info(dataset_name)
    ignore_label = info.ignore_label if info else 255
    if num_classes is None:
        num_classes = info.num_classes if info else None
    if not is_training:
        # Evaluation: every image once, in file order (shard by shard).
        deterministic, num_readers = True, 1
    if deterministic and seed is None:
        seed = 0
    if repeat is None:
        repeat = -1 if is_training else 1
    if drop_remainder is None:
        drop_remainder = is_training
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)

    dataset, is_decoded, colour_table, sharded = _source(
        dataset_name,
        dataset_dir,
        split,
        info,
        is_training=is_training,
        seed=seed,
        num_readers=num_readers,
        input_context=input_context,
        skip_bad_examples=skip_bad_examples,
        deterministic=deterministic,
    )
    if input_context is not None and not sharded:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)

    def decode_and_check(ds):
        if not is_decoded:
            ds = decode.decode_dataset(ds, colour_table, deterministic=deterministic)
        ds = ds.map(
            lambda e: decode.validate(e, num_classes, ignore_label),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=deterministic,
        )
        return decode.raise_or_skip(ds, skip_bad_examples, deterministic)

    if cache:
        dataset = decode_and_check(dataset)
        dataset = dataset.cache(cache if isinstance(cache, str) else "")
        dataset = dataset.repeat(repeat) if repeat != 1 else dataset
        if is_training:
            dataset = dataset.shuffle(shuffle_buffer, seed=seed)
    else:
        dataset = dataset.repeat(repeat) if repeat != 1 else dataset
        if is_training:  # Shuffle encoded examples: cheaper than decoded ones.
            dataset = dataset.shuffle(shuffle_buffer, seed=seed)
        dataset = decode_and_check(dataset)

    if is_training:
        seeds = tf.data.Dataset.random(seed=seed).batch(2, drop_remainder=True)
        dataset = tf.data.Dataset.zip((dataset, seeds))
    else:
        dataset = dataset.map(lambda e: (e, tf.zeros([2], tf.int64)))

    def augment(example, element_seed):
        image, label = example["image"], example["label"]
        _, image, label = preprocess.preprocess_image_and_label(
            image,
            label,
            crop_height,
            crop_width,
            min_resize_value=min_resize_value,
            max_resize_value=max_resize_value,
            resize_factor=resize_factor,
            min_scale_factor=min_scale_factor,
            max_scale_factor=max_scale_factor,
            scale_factor_step_size=scale_factor_step_size,
            ignore_label=ignore_label,
            is_training=is_training,
            model_variant=model_variant,
            seed=element_seed,
            keep_aspect_ratio=keep_aspect_ratio,
        )
        if not is_training:
            image, label = preprocess.pad_to_valid_size(
                image,
                label,
                crop_height,
                crop_width,
                ignore_label,
                eval_size_multiple,
                model_variant,
            )
        shape = tf.shape(example["image"])
        return {
            "image": image,
            "label": label,
            "height": shape[0],
            "width": shape[1],
            "image_name": example["image_name"],
        }

    dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if is_training:
        dataset = dataset.batch(
            batch_size,
            drop_remainder=drop_remainder,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=deterministic,
        )
    else:
        pad_pixel = preprocess.mean_pixel(model_variant)[0]
        dataset = dataset.padded_batch(
            batch_size,
            drop_remainder=drop_remainder,
            padded_shapes={
                "image": [None, None, 3],
                "label": [None, None, 1],
                "height": [],
                "width": [],
                "image_name": [],
            },
            padding_values={
                "image": tf.constant(pad_pixel, tf.float32),
                "label": tf.constant(ignore_label, tf.int32),
                "height": tf.constant(0, tf.int32),
                "width": tf.constant(0, tf.int32),
                "image_name": tf.constant(""),
            },
        )
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    dataset = dataset.with_options(options)
    logging.info(
        "Input pipeline: %s split %r from %s (training=%s).",
        dataset_name,
        split,
        dataset_dir,
        is_training,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
