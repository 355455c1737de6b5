"""DeepLabV3+ in TensorFlow 2 / Keras 3, faithful to the official research/deeplab graph."""

import os

# TF 2.21 leaves oneDNN off on CPUs without AVX512 VNNI/BF16/AMX; on such CPUs turning it on
# saves 12-27% of inference and training time (benchmarks/). It only takes effect when
# TensorFlow has not been imported yet; an explicit setting by the user wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from deeplab.modeling.options import ModelOptions

__all__ = ["ModelOptions", "build_deeplab", "build_deeplab_from_options"]
__version__ = "0.1.0"


def __getattr__(name):
    # The model builders import TensorFlow; loading them on first use keeps
    # `import deeplab.cli_flags` (the command lines' --help, their log filter) TensorFlow-free.
    if name in ("build_deeplab", "build_deeplab_from_options"):
        from deeplab.modeling import model

        return getattr(model, name)
    raise AttributeError(f"module 'deeplab' has no attribute {name!r}")
