"""The built-in synthetic segmentation dataset (default when no data is given).

Scenes of 2-6 objects of six shape classes (disc, square, triangle, ring,
cross, striped bar) on a textured, noisy background. Object and background
colours are drawn independently of the class, so colour alone cannot solve the
task: a class is told by its shape and structure (the ring's hole, the
square's checks, the triangle's dots, the cross's grid, the bar's stripes). Objects occlude each other; label boundaries carry
a band of the ignore label like VOC's. Image sizes and aspect ratios vary.
Every image is a pure function of (seed, split, index), so the set is
deterministic. Shards are written in the official TFRecord format.
"""
import io
import math
import os

import numpy as np
from PIL import Image

from deeplab.data import descriptors
from deeplab.data import tfrecord

CLASS_NAMES = descriptors.SYNTHETIC_CLASS_NAMES
NUM_CLASSES = len(CLASS_NAMES)
IGNORE_LABEL = 255
_SPLIT_IDS = {'train': 1, 'val': 2}


def _smooth_noise(rng, height, width, cells, channels):
  """Low-frequency noise in [-1, 1]: a random grid upsampled bilinearly."""
  grid = rng.uniform(-1, 1, size=(cells, cells, channels)).astype(np.float32)
  layers = [np.asarray(Image.fromarray(grid[..., c], mode='F').resize(
      (width, height), Image.BILINEAR)) for c in range(channels)]
  return np.stack(layers, axis=-1)


def _distinct_colour(rng, avoid, min_distance=90.0):
  """A random RGB colour at least min_distance away from ``avoid``."""
  for _ in range(50):
    colour = rng.uniform(0, 255, size=3)
    if np.linalg.norm(colour - avoid) >= min_distance:
      return colour
  return 255.0 - avoid


def _shape_mask(class_id, u, v, radius):
  """Boolean mask of a shape in object coordinates (u, v), size ``radius``."""
  r2 = u * u + v * v
  if class_id == 1:  # disc
    return r2 <= radius ** 2
  if class_id == 2:  # square
    return (np.abs(u) <= 0.8 * radius) & (np.abs(v) <= 0.8 * radius)
  if class_id == 3:  # triangle (equilateral, circumradius = radius)
    mask = np.ones_like(u, dtype=bool)
    for k in range(3):
      angle = math.pi / 2 + k * 2 * math.pi / 3
      mask &= (u * math.cos(angle) + v * math.sin(angle)) <= radius / 2
    return mask
  if class_id == 4:  # ring
    return (r2 <= radius ** 2) & (r2 >= (0.55 * radius) ** 2)
  if class_id == 5:  # cross
    arm = 0.3 * radius
    return (((np.abs(u) <= radius) & (np.abs(v) <= arm)) |
            ((np.abs(u) <= arm) & (np.abs(v) <= radius)))
  if class_id == 6:  # striped bar
    return (np.abs(u) <= 1.2 * radius) & (np.abs(v) <= 0.45 * radius)
  raise ValueError('Unknown synthetic class %d.' % class_id)


def _class_pattern(class_id, u, v, radius):
  """The surface structure of a class in object coordinates, or None (plain).

  Discs and rings are plain (the hole tells them apart), squares are
  checkered, triangles dotted, crosses carry a grid of thin lines and bars
  stripes. Colours stay random: the pattern is structure, not colour.
  """
  period = max(4.0, radius / 2.5)
  if class_id == 2:  # checkerboard
    return (np.floor(u / period) + np.floor(v / period)) % 2 == 0
  if class_id == 3:  # dots
    du = (u / period) % 1.0 - 0.5
    dv = (v / period) % 1.0 - 0.5
    return du * du + dv * dv > 0.09
  if class_id == 5:  # grid of thin lines
    return ((u / period) % 1.0 > 0.25) & ((v / period) % 1.0 > 0.25)
  if class_id == 6:  # stripes across the bar
    return np.floor(u / period) % 2 == 0
  return None


def _ignore_border(label, width):
  """Marks pixels within ``width`` of a label change with the ignore label."""
  edge = np.zeros(label.shape, dtype=bool)
  for axis in (0, 1):
    change = np.diff(label, axis=axis) != 0
    pad_before = [(0, 0), (0, 0)]
    pad_after = [(0, 0), (0, 0)]
    pad_before[axis] = (1, 0)
    pad_after[axis] = (0, 1)
    edge |= np.pad(change, pad_before) | np.pad(change, pad_after)
  for _ in range(width - 1):
    grown = edge.copy()
    grown[1:] |= edge[:-1]
    grown[:-1] |= edge[1:]
    grown[:, 1:] |= edge[:, :-1]
    grown[:, :-1] |= edge[:, 1:]
    edge = grown
  out = label.copy()
  out[edge] = IGNORE_LABEL
  return out


def generate_example(seed, split, index, *, min_size=112, max_size=224,
                     min_objects=2, max_objects=6, border_width=1,
                     noise_std=10.0):
  """Generates one scene: (uint8 image [H, W, 3], uint8 label [H, W]).

  Labels are 0 (background), 1..6 (shape classes) and 255 (ignore band of
  ``border_width`` pixels on each side of every label boundary; 0 = none).
  """
  rng = np.random.default_rng([seed, _SPLIT_IDS.get(split, 3), index])
  height = int(rng.integers(min_size, max_size + 1))
  width = int(rng.integers(min_size, max_size + 1))
  # Background: random base colour, smooth blotches, a gradient, fine noise.
  base = rng.uniform(0, 255, size=3)
  image = (base + 45.0 * _smooth_noise(rng, height, width,
                                       int(rng.integers(3, 8)), 3)
           + 20.0 * _smooth_noise(rng, height, width, 16, 1))
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  tilt = rng.uniform(-0.25, 0.25, size=2)
  image += (tilt[0] * (yy - height / 2) + tilt[1] * (xx - width / 2))[..., None]
  label = np.zeros((height, width), dtype=np.uint8)
  short = min(height, width)
  for _ in range(int(rng.integers(min_objects, max_objects + 1))):
    class_id = int(rng.integers(1, NUM_CLASSES))
    radius = rng.uniform(0.12, 0.28) * short
    cy = rng.uniform(0.1, 0.9) * height
    cx = rng.uniform(0.1, 0.9) * width
    angle = rng.uniform(0, 2 * math.pi)
    u = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
    v = -(xx - cx) * math.sin(angle) + (yy - cy) * math.cos(angle)
    mask = _shape_mask(class_id, u, v, radius)
    if not mask.any():
      continue
    colour = _distinct_colour(rng, base)
    fill = colour + rng.uniform(5, 25) * _smooth_noise(
        rng, height, width, int(rng.integers(4, 10)), 3)
    pattern = _class_pattern(class_id, u, v, radius)
    if pattern is not None:  # The class's surface structure, in a second colour.
      fill = np.where(pattern[..., None], fill,
                      _distinct_colour(rng, colour, 120.0))
    image[mask] = fill[mask]
    label[mask] = class_id
  image += rng.normal(0, noise_std, size=image.shape)
  image = np.clip(np.round(image), 0, 255).astype(np.uint8)
  if border_width > 0:
    label = _ignore_border(label, border_width)
  return image, label


def encode_example(image, label, name, jpeg_quality=90):
  """Returns the official tf.train.Example of an image (JPEG) and label (PNG)."""
  image_buffer = io.BytesIO()
  Image.fromarray(image).save(image_buffer, format='JPEG',
                              quality=jpeg_quality)
  label_buffer = io.BytesIO()
  Image.fromarray(label, mode='L').save(label_buffer, format='PNG')
  return tfrecord.image_seg_to_tfexample(
      image_buffer.getvalue(), name, image.shape[0], image.shape[1],
      label_buffer.getvalue(), image_format='jpg')


def build_synthetic_dataset(output_dir, *, seed=0,
                            num_train=descriptors.SYNTHETIC_NUM_TRAIN,
                            num_val=descriptors.SYNTHETIC_NUM_VAL,
                            num_shards=4, **generate_kwargs):
  """Writes train-*/val-* official TFRecord shards; returns their paths.

  generate_kwargs go to generate_example (min_size, max_size, min_objects,
  max_objects, border_width, noise_std).
  """
  paths = []
  for split, count in (('train', num_train), ('val', num_val)):
    def make_example(index, split=split):
      image, label = generate_example(seed, split, index, **generate_kwargs)
      return encode_example(image, label, '%s_%06d' % (split, index))

    shards = max(1, min(num_shards, count))
    paths += tfrecord.write_shards(range(count), output_dir, split, shards,
                                   make_example)
  return paths


def ensure_synthetic_dataset(output_dir, **kwargs):
  """Builds the synthetic dataset unless output_dir already holds train and
  val shards; returns the shard paths."""
  existing = (tfrecord.list_shards(output_dir, 'train') +
              tfrecord.list_shards(output_dir, 'val'))
  if (tfrecord.list_shards(output_dir, 'train') and
      tfrecord.list_shards(output_dir, 'val')):
    return existing
  for path in existing:  # A partial build: start again.
    os.remove(path)
  return build_synthetic_dataset(output_dir, **kwargs)
