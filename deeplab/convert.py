"""`python -m deeplab.convert ...`: the command line in `deeplab/cli/convert.py` (installed as
the console script `deeplab-convert`)."""

from deeplab.cli.convert import run

if __name__ == "__main__":
    run()
