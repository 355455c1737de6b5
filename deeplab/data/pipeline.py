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
from deeplab.data.config import DataConfig


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
    color_table = decode.palette_lookup_table(info.palette) if info is not None else None
    return readers.folder_dataset(pairs), False, color_table, True


def split_size(dataset_name, dataset_dir, split, from_files=False):
    """Number of examples of a split (for progress bars): the descriptor's count for the
    official datasets (unless `from_files`), else the records of the split's TFRecord shards
    or its listed folder pairs; None when unknown (e.g. TFDS)."""
    info = _resolve_info(dataset_name)
    official = info is not None and dataset_name != "synthetic" and not from_files
    if official and info.splits.get(split):
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


def _decoded_and_validated(ds, is_decoded, color_table, num_classes, ignore_label, deterministic):
    """Decoded examples, each with its 'error' ('' when good; see decode.validate)."""
    if not is_decoded:
        ds = decode.decode_dataset(ds, color_table, deterministic=deterministic)
    return ds.map(
        lambda e: decode.validate(e, num_classes, ignore_label),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )


def example_problems(dataset_name, dataset_dir, split, num_classes=None):
    """Every example of a split, in file order, as {'source', 'error'} ('' when the example
    decodes, its label matches the image size and its values are classes (0..num_classes-1,
    default: the dataset's) or the ignore label): for checking a whole split at once."""
    info = _resolve_info(dataset_name)
    ignore_label = info.ignore_label if info else 255
    if num_classes is None:
        num_classes = info.num_classes if info else None
    dataset, is_decoded, color_table, _ = _source(
        dataset_name,
        dataset_dir,
        split,
        info,
        is_training=False,
        seed=0,
        num_readers=1,
        input_context=None,
        skip_bad_examples=True,
        deterministic=True,
    )
    dataset = _decoded_and_validated(
        dataset, is_decoded, color_table, num_classes, ignore_label, True
    )
    return dataset.map(lambda e: {"source": e["source"], "error": e["error"]})


def build_dataset(config: DataConfig, input_context=None):
    """Builds the training or evaluation tf.data pipeline of `config`.

    `input_context`: a tf.distribute.InputContext; shards by file when there are at least as
    many shards as input pipelines, else by element.

    Returns:
      A dataset of dicts: 'image' float32 [B, H, W, 3] (0..255, padding 127.5),
      'label' int32 [B, H, W, 1] (ignore label in padding), 'height', 'width'
      int32 [B] (decoded image size), 'image_name' string [B]. Training: H, W =
      crop_size. Evaluation: H, W = crop_size unless an image of the batch is
      larger; then the batch is padded to that image's valid size.
    """
    dataset_name, split, is_training = config.dataset_name, config.split, config.is_training
    crop_height, crop_width = config.crop_size
    deterministic, num_readers, seed = config.deterministic, config.num_readers, config.seed
    repeat, drop_remainder, batch_size = config.repeat, config.drop_remainder, config.batch_size
    skip_bad_examples, model_variant = config.skip_bad_examples, config.model_variant
    info = _resolve_info(dataset_name)
    ignore_label = info.ignore_label if info else 255
    num_classes = config.num_classes
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

    dataset, is_decoded, color_table, sharded = _source(
        dataset_name,
        config.dataset_dir,
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
        ds = _decoded_and_validated(
            ds, is_decoded, color_table, num_classes, ignore_label, deterministic
        )
        return decode.raise_or_skip(ds, skip_bad_examples, deterministic)

    if config.cache:
        dataset = decode_and_check(dataset)
        dataset = dataset.cache(config.cache if isinstance(config.cache, str) else "")
        dataset = dataset.repeat(repeat) if repeat != 1 else dataset
        if is_training:
            dataset = dataset.shuffle(config.shuffle_buffer, seed=seed)
    else:
        dataset = dataset.repeat(repeat) if repeat != 1 else dataset
        if is_training:  # Shuffle encoded examples: cheaper than decoded ones.
            dataset = dataset.shuffle(config.shuffle_buffer, seed=seed)
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
            ignore_label=ignore_label,
            is_training=is_training,
            model_variant=model_variant,
            seed=element_seed,
            **config.resize_and_scale(),
        )
        if not is_training:
            image, label = preprocess.pad_to_valid_size(
                image,
                label,
                crop_height,
                crop_width,
                ignore_label,
                config.eval_size_multiple,
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
        config.dataset_dir,
        is_training,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
