"""Installs the deeplab library (DeepLabV3+ in TensorFlow 2 / Keras 3)."""

from setuptools import find_packages, setup

setup(
    name="deeplab",
    version="0.1.0",
    description="DeepLabV3+ (Xception, MobileNetV2, ASPP, decoder) in TensorFlow 2 / Keras 3, "
    "faithful to the official research/deeplab graph",
    packages=find_packages(include=["deeplab", "deeplab.*", "datasets", "benchmarks"]),
    py_modules=["train", "eval", "vis", "export"],
    # benchmarks: the official graph's timings; deeplab/cells: the official dense prediction
    # cell descriptions (--dense_prediction_cell_json).
    package_data={"benchmarks": ["official_timings.json"], "deeplab": ["cells/*.json"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        # TensorFlow 2.21 no longer pulls TensorBoard in; `tensorboard --logdir runs` needs it.
        "tensorboard>=2.21,<2.22",
        "keras>=3.10,<4",
        "tensorflow-datasets>=4.9,<5",
        "numpy>=1.26",
        "absl-py>=2.1",
        "matplotlib>=3.8",
        "pillow>=10",
        # LiteRT interpreter (XNNPACK) for the exported .tflite models; ~60 MB.
        "ai-edge-litert>=2.3,<3",
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3", "ruff==0.17.6"]},
)
