"""`python eval.py ...` from a checkout: the command line in `deeplab/cli/eval.py`
(installed as the console script `deeplab-eval`)."""

from deeplab.cli.eval import run

if __name__ == "__main__":
    run()
