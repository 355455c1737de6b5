"""`python export.py ...` from a checkout: the command line in `deeplab/cli/export.py`
(installed as the console script `deeplab-export`)."""

from deeplab.cli.export import run

if __name__ == "__main__":
    run()
