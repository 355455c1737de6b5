"""DeepLabV3+ in TensorFlow 2 / Keras 3, faithful to the official research/deeplab graph."""
from deeplab.config import ModelOptions
from deeplab.model import build_deeplab, build_deeplab_from_options

__all__ = ["ModelOptions", "build_deeplab", "build_deeplab_from_options"]
__version__ = "0.1.0"
