"""`python vis.py ...` from a checkout: the command line in `deeplab/cli/vis.py`
(installed as the console script `deeplab-vis`)."""

from deeplab.cli.vis import run

if __name__ == "__main__":
    run()
