"""Official research/deeplab command lines: every official flag parses, the TF1 cluster flags
map onto tf.distribute or stop with one line, `--help` lists the model flags."""

import json
import os
import subprocess
import sys
import types

import pytest
from absl import flags

from deeplab.cli import flags as cli_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"train": "train.py", "eval": "eval.py", "vis": "vis.py", "export": "export.py"}

# Imports the script (defining its flags), then parses a command line that gives every
# defined official flag its default value in the official `--name=value` form.
_PARSE_ALL = """
import json, sys
from absl import flags
import {module}
from deeplab.cli import flags as cli_flags
names = cli_flags.OFFICIAL_SCRIPT_FLAGS["{script}"] + cli_flags.OFFICIAL_COMMON_FLAGS
defined = [n for n in names if n in flags.FLAGS]
samples = {{"IntegerParser": "1", "FloatParser": "1.0"}}
argv = ["prog"]
for name in defined:
    flag = flags.FLAGS[name]
    given = [a for a in flag.serialize().split("\\n") if a]
    if not given:
        parser = type(flag.parser).__name__
        value = flag.parser.enum_values[0] if parser == "EnumParser" else samples.get(parser, "1")
        given = [f"--{{name}}={{value}}"]
    argv += given
flags.FLAGS(argv)
print(json.dumps({{"missing": [n for n in names if n not in flags.FLAGS], "argv": argv}}))
"""


def _env():
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_official_flag_parses(script):
    code = _PARSE_ALL.format(module=SCRIPTS[script][:-3], script=script)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["missing"] == []
    # Every official flag that is defined was on the parsed command line.
    official = set(cli_flags.OFFICIAL_SCRIPT_FLAGS[script] + cli_flags.OFFICIAL_COMMON_FLAGS)
    given = {a.split("=")[0][2:] for a in result["argv"][1:]}
    given = {n[2:] if n.startswith("no") and n[2:] in official else n for n in given}
    assert given == official


@pytest.mark.slow
def test_train_help_lists_model_flags():
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=300,
    )
    for name in ("--model_variant", "--atrous_rates", "--decoder_output_stride", "--num_classes"):
        assert name in out.stdout, name


@pytest.mark.slow
def test_quantize_delay_step_with_mixed_precision_stops_with_one_line(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "train.py"),
            f"--train_logdir={tmp_path / 'run'}",
            "--quantize_delay_step=0",
            "--mixed_precision=float16",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=300,
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
    with open(os.path.join(ROOT, "setup.py")) as f:
        assert '"tensorboard>=' in f.read()


def test_bounded_activation_stops_naming_the_flag():
    # Parsed flag values as model_options_from_flags reads them (it stops before the others).
    values = types.SimpleNamespace(
        aspp_with_batch_norm=True, logits_kernel_size=1, use_bounded_activation=True
    )
    with pytest.raises(flags.ValidationError, match="--use_bounded_activation"):
        cli_flags.model_options_from_flags(values, num_classes=3)
