"""`python train.py ...` from a checkout: the command line in `deeplab/cli/train.py`
(installed as the console script `deeplab-train`)."""

from deeplab.cli.train import run

if __name__ == "__main__":
    run()
