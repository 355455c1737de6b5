"""`python datasets/build_cityscapes_data.py ...` from a checkout: the builder in
`deeplab/cli/build_cityscapes_data.py` (installed as the console script `deeplab-build-cityscapes`)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from deeplab.cli.build_cityscapes_data import run  # noqa: E402

if __name__ == "__main__":
    run()
