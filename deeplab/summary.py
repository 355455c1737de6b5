"""`python -m deeplab.summary`: the model summary command line (`deeplab/cli/summary.py`)."""

from deeplab.cli.summary import run

if __name__ == "__main__":
    run()
