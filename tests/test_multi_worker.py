"""MultiWorkerMirroredStrategy with two worker processes on localhost (TF_CONFIG).

Both workers train the real DeepLab (mobilenet_v2, depth multiplier 0.25, crop 65, the engine
users scale out on) on their shards of the synthetic data through the real input pipeline and
trainer; after the run their weights, BatchNorm statistics included, must be identical. A second run with
more steps restores the chief's checkpoint on both workers and continues from it (backup and
restore).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import synthetic

# Two worker processes.
pytestmark = pytest.mark.slow


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r"""
import json, sys
import numpy as np
from absl import logging
logging.set_verbosity(logging.INFO)
from deeplab.data.config import DataConfig
from deeplab.modeling.options import ModelOptions
from deeplab.training import LearningRateConfig, TrainConfig, Trainer

logdir, data_dir, steps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
# tests.helpers.tiny_options at crop 65, spelled out: importing tests.helpers starts TensorFlow's
# context before MultiWorkerMirroredStrategy can configure its collective ops.
options = ModelOptions(model_variant="mobilenet_v2", num_classes=7, atrous_rates=None,
                       decoder_output_stride=None, depth_multiplier=0.25, crop_size=(65, 65))
data = DataConfig("synthetic", data_dir, "train", crop_size=(65, 65), batch_size=4,
                  is_training=True, min_scale_factor=0.75, max_scale_factor=1.25, seed=5)
config = TrainConfig(
    train_logdir=logdir, model_options=options, data=data,
    learning_rate=LearningRateConfig(base_learning_rate=0.01, training_number_of_steps=steps),
    log_steps=1, save_interval_steps=2, strategy="multi_worker")
trainer = Trainer(config)
result = trainer.run()
np.savez(out, *[w.numpy() for w in trainer.model.weights])
print("RESULT " + json.dumps({"replicas": trainer.num_replicas, "chief": trainer.is_chief,
                              **result}))
"""


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _run_cluster(script, logdir, data_dir, steps, tmp_path, tag):
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        out = str(tmp_path / f"{tag}_{index}.npz")
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, script, logdir, data_dir, str(steps), out],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
                out,
            )
        )
    results = []
    for proc, out in procs:
        try:
            stdout, stderr = proc.communicate(timeout=900)
        finally:
            for other, _ in procs:
                if other.poll() is None and proc.returncode != 0:
                    other.kill()
        assert proc.returncode == 0, stderr[-4000:]
        line = next(lyr for lyr in stdout.splitlines() if lyr.startswith("RESULT "))
        results.append((json.loads(line[len("RESULT ") :]), np.load(out), stderr))
    return results


def _assert_same_weights(a, b):
    assert len(a.files) == len(b.files) > 0
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.slow
def test_two_workers_on_localhost_end_identical_and_resume(tmp_path):
    data_dir = str(tmp_path / "data")
    synthetic.build_synthetic_dataset(
        data_dir, num_train=8, num_val=2, num_shards=2, min_size=48, max_size=64
    )
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    logdir = str(tmp_path / "logdir")

    first = _run_cluster(str(script), logdir, data_dir, 3, tmp_path, "first")
    (r0, w0, _), (r1, w1, _) = first
    assert r0["replicas"] == r1["replicas"] == 2
    assert r0["chief"] and not r1["chief"]
    assert r0["step"] == r1["step"] == 3
    _assert_same_weights(w0, w1)
    # Only the chief's checkpoint stays; the other worker's temporary copy is gone.
    assert tf.train.latest_checkpoint(logdir).endswith("ckpt-3")
    assert (
        not os.listdir(os.path.join(logdir, ".worker_tmp"))
        if os.path.isdir(os.path.join(logdir, ".worker_tmp"))
        else True
    )

    second = _run_cluster(str(script), logdir, data_dir, 5, tmp_path, "second")
    (s0, v0, err0), (s1, v1, err1) = second
    for result, err in ((s0, err0), (s1, err1)):
        assert result["step"] == 5 and result["steps_run"] == 2
        assert "(step 3)" in err and "from step 3 to 5" in err
    _assert_same_weights(v0, v1)
    assert tf.train.latest_checkpoint(logdir).endswith("ckpt-5")
