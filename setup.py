"""Installs the deeplab library (DeepLabV3+ in TensorFlow 2 / Keras 3).

The wheel holds the `deeplab` package and nothing else at the top level; the command lines
are console scripts (`deeplab-train`, ...). In a checkout, `python train.py ...` and
`python datasets/build_*_data.py ...` are thin launchers of the same commands.
"""

from setuptools import find_packages, setup

_CONSOLE_SCRIPTS = {
    "deeplab-train": "deeplab.cli.train:run",
    "deeplab-eval": "deeplab.cli.eval:run",
    "deeplab-vis": "deeplab.cli.vis:run",
    "deeplab-export": "deeplab.cli.export:run",
    "deeplab-summary": "deeplab.cli.summary:run",
    "deeplab-convert": "deeplab.cli.convert:run",
    "deeplab-build-voc2012": "deeplab.cli.build_voc2012_data:run",
    "deeplab-build-cityscapes": "deeplab.cli.build_cityscapes_data:run",
    "deeplab-build-ade20k": "deeplab.cli.build_ade20k_data:run",
    "deeplab-build-synthetic": "deeplab.cli.build_synthetic_data:run",
    "deeplab-validate-data": "deeplab.cli.validate_data:run",
}

setup(
    name="deeplab",
    version="0.1.0",
    description="DeepLabV3+ (Xception, MobileNetV2, ASPP, decoder) in TensorFlow 2 / Keras 3, "
    "faithful to the official research/deeplab graph",
    packages=find_packages(include=["deeplab", "deeplab.*"]),
    # The official dense prediction cell descriptions (--dense_prediction_cell_json).
    package_data={"deeplab.modeling": ["cells/*.json"]},
    entry_points={"console_scripts": [f"{k}={v}" for k, v in _CONSOLE_SCRIPTS.items()]},
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
    extras_require={
        # JAX (CPU) runs the model core on the second Keras backend (tests/test_backends.py).
        "test": ["pytest>=8", "pytest-xdist>=3", "ruff==0.17.6", "jax[cpu]>=0.4.30"]
    },
)
