"""Small on-disk datasets for the data tests (images are tiny)."""

import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image


def encode(array, fmt, mode=None, palette=None):
    """Encodes a uint8 array with PIL; returns the file bytes."""
    image = Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode)
    if palette is not None:
        image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def random_pair(rng, height, width, num_classes):
    """A random RGB image and a label with blocks of classes and some 255."""
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    label = rng.integers(0, num_classes, size=(height, width), dtype=np.uint8)
    label[0, :] = 255
    return image, label


def official_example(image_bytes, filename, height, width, seg_bytes, image_format=b"jpg"):
    """A tf.train.Example written exactly as the official build_data.py does
    (independent of deeplab.data.tfrecord)."""

    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/encoded": b(image_bytes),
                "image/filename": b(filename.encode()),
                "image/format": b(image_format),
                "image/height": i(height),
                "image/width": i(width),
                "image/channels": i(3),
                "image/segmentation/class/encoded": b(seg_bytes),
                "image/segmentation/class/format": b(b"png"),
            }
        )
    )


def write_official_tfrecords(output_dir, split, pairs, num_shards=2):
    """Writes (name, image, label) triples as official shards (JPEG + PNG).

    Returns {name: (image as tf.io.decode_jpeg decodes it, label)}.
    """
    os.makedirs(output_dir, exist_ok=True)
    per_shard = -(-len(pairs) // num_shards)
    decoded = {}
    for shard in range(num_shards):
        path = os.path.join(output_dir, f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for name, image, label in pairs[shard * per_shard : (shard + 1) * per_shard]:
                jpeg = encode(image, "JPEG")
                png = encode(label, "PNG", mode="L")
                writer.write(
                    official_example(
                        jpeg, name, image.shape[0], image.shape[1], png
                    ).SerializeToString()
                )
                decoded[name] = (tf.io.decode_jpeg(jpeg).numpy(), label)
    return decoded


def voc_palette():
    from deeplab import colormaps  # pylint: disable=g-import-not-at-top

    return colormaps.create_pascal_label_colormap()[:256].flatten().tolist()


def write_voc_folder(root, splits, rng, size=(20, 24), palette_labels=False, num_classes=21):
    """Writes a VOC2012-layout folder; returns {name: (image, label)}."""
    data = {}
    for split, names in splits.items():
        write(
            os.path.join(root, "ImageSets", "Segmentation", split + ".txt"),
            ("\n".join(names) + "\n").encode(),
        )
        for name in names:
            image, label = random_pair(rng, size[0], size[1], num_classes)
            write(os.path.join(root, "JPEGImages", name + ".jpg"), encode(image, "JPEG"))
            if palette_labels:
                write(
                    os.path.join(root, "SegmentationClass", name + ".png"),
                    encode(label, "PNG", mode="P", palette=voc_palette()),
                )
            else:
                write(
                    os.path.join(root, "SegmentationClassRaw", name + ".png"),
                    encode(label, "PNG", mode="L"),
                )
            data[name] = (image, label)
    return data
