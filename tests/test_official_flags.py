"""Official research/deeplab command lines: every official flag parses, the TF1 cluster flags
map onto tf.distribute or stop with one line, `--help` lists the model flags."""

import json
import os
import types

import pytest
from absl import flags

from deeplab.cli import flags as cli_flags
from tests import helpers

SCRIPTS = {"train": "train.py", "eval": "eval.py", "vis": "vis.py", "export": "export.py"}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_official_flag_parses(script):
    """The script's flags (defined in this process), parsed from a command line that gives
    every official flag its default value in the official `--name=value` form."""
    names = helpers.official_flags(script)
    samples = {"IntegerParser": "1", "FloatParser": "1.0"}
    with helpers.cli_flags_defined(SCRIPTS[script]):
        assert [n for n in names if n not in flags.FLAGS] == []
        argv = ["prog"]
        for name in names:
            flag = flags.FLAGS[name]
            given = [a for a in flag.serialize().split("\n") if a]
            if not given:
                parser = type(flag.parser).__name__
                value = flag.parser.enum_values[0] if parser == "EnumParser" else "1"
                given = [f"--{name}={samples.get(parser, value)}"]
            argv += given
        try:
            flags.FLAGS(argv)
        finally:
            flags.FLAGS.unparse_flags()
    # Every official flag was on the parsed command line.
    given = {a.split("=")[0][2:] for a in argv[1:]}
    given = {n[2:] if n.startswith("no") and n[2:] in names else n for n in given}
    assert given == set(names)


def test_train_help_lists_model_flags():
    with helpers.cli_flags_defined("train.py") as module:
        text = flags.FLAGS.module_help(module)
    for name in ("--model_variant", "--atrous_rates", "--decoder_output_stride", "--num_classes"):
        assert name in text, name


def test_quantize_delay_step_with_mixed_precision_stops_with_one_line(tmp_path):
    out = helpers.run_cli_in_process(
        "train.py",
        f"--train_logdir={tmp_path / 'run'}",
        "--quantize_delay_step=0",
        "--mixed_precision=float16",
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if "quantize_delay_step" in line]
    assert len(lines) == 1 and "--mixed_precision=float16" in lines[0]
    assert not (tmp_path / "run").exists()


def _cluster_values(*argv):
    values = flags.FlagValues()
    cli_flags.define_cluster_flags(values)
    values(["prog", *argv])
    return values


def _stop(argv, environ=None):
    with pytest.raises(flags.ValidationError) as info:
        cli_flags.cluster_strategy(_cluster_values(*argv), environ or {})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_cluster_flags_without_equivalent_stop_with_the_replacement():
    assert "--strategy=multi_worker" in _stop(["--num_ps_tasks=2"])
    message = _stop(["--master=grpc://10.0.0.2:8470"])
    assert "--strategy=tpu --tpu=" in message and "TF_CONFIG" in message
    assert "TF_CONFIG" in _stop(["--num_replicas=2"])
    assert "TF_CONFIG" in _stop(["--task=1"])
    two_workers = json.dumps(
        {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}
    )
    assert "lists 2 workers" in _stop(["--num_replicas=3"], {"TF_CONFIG": two_workers})
    assert "task index 0" in _stop(["--task=1"], {"TF_CONFIG": two_workers})


def test_cluster_flags_that_map_give_one_line_each():
    tf_config = json.dumps(
        {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    )
    environ = {"TF_CONFIG": tf_config}
    values = _cluster_values("--num_replicas=2", "--task=1", "--startup_delay_steps=5")
    strategy, tpu, notes = cli_flags.cluster_strategy(values, environ)
    assert (strategy, tpu) == ("multi_worker", None)
    assert len(notes) == 3 and all("\n" not in n for n in notes)
    assert notes[0].startswith("--num_replicas=2 -> --strategy=multi_worker")
    assert notes[1] == "--task=1 -> TF_CONFIG task index 1"
    assert notes[2].startswith("--startup_delay_steps=5 -> nothing to delay")

    environ = {}
    strategy, _, notes = cli_flags.cluster_strategy(
        _cluster_values("--num_clones=2", "--clone_on_cpu"), environ
    )
    assert strategy == "mirrored"
    assert environ["CUDA_VISIBLE_DEVICES"] == "-1"
    assert [n.split(" ")[0] for n in notes] == ["--clone_on_cpu", "--num_clones=2"]
    # Official defaults given explicitly change nothing and print nothing.
    values = _cluster_values("--num_replicas=1", "--task=0", "--num_ps_tasks=0", "--master=")
    assert cli_flags.cluster_strategy(values, {}) == ("default", None, [])


def test_tensorboard_is_installed_and_required():
    import tensorboard

    assert tensorboard.__version__.startswith("2.")
    with open(os.path.join(helpers.REPO, "setup.py")) as f:
        assert '"tensorboard>=' in f.read()


def test_bounded_activation_stops_naming_the_flag():
    # Parsed flag values as model_options_from_flags reads them (it stops before the others).
    values = types.SimpleNamespace(
        aspp_with_batch_norm=True, logits_kernel_size=1, use_bounded_activation=True
    )
    with pytest.raises(flags.ValidationError, match="--use_bounded_activation"):
        cli_flags.model_options_from_flags(values, num_classes=3)
