"""`python -m deeplab.summary` (console script `deeplab-summary`): per-block table of stride,
atrous rate, feature size, channels, parameters and Mult-Adds of a DeepLab configuration, then
totals (`--json` for one object). Takes the model flags of train.py plus --crop_size.
"""

import json

from deeplab.cli import flags as cli_flags


def main(argv) -> None:
    del argv
    try:
        options, crop, as_json = cli_flags.summary_arguments()
        # TensorFlow is imported after the flags (and the quiet-log filter) are in place.
        from deeplab.modeling.summary import format_table, summarize

        summary = summarize(options, crop)
    except (cli_flags.FlagsError, ValueError) as err:
        cli_flags.print_flags_error(err)
        return 2
    if as_json:
        print(
            json.dumps(
                {k: v for k, v in summary.items() if k != "blocks"} | {"blocks": summary["blocks"]},
                default=list,
            )
        )
    else:
        print(format_table(summary))


def run() -> None:
    """The console script `deeplab-summary` and `python -m deeplab.summary`."""
    cli_flags.define_summary_flags()
    cli_flags.run_command_line(lambda: main([]), usage=__doc__)


if __name__ == "__main__":
    run()
