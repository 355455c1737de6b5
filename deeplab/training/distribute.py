"""tf.distribute strategies behind one training code path.

* `default`: the default strategy (one device: the first GPU if there is one, else CPU).
* `mirrored`: `MirroredStrategy` over the local GPUs (or the CPU when there are none).
* `multi_worker`: `MultiWorkerMirroredStrategy` configured from the `TF_CONFIG` environment
  variable (`{"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type":
  "worker", "index": i}}`); every worker runs the same command.
* `tpu`: `TPUStrategy` through `TPUClusterResolver(tpu=...)` (a TPU name, a `grpc://`
  address, or `local`/empty on a TPU VM); the TPU system is connected and initialised first.

In every case `--train_batch_size` is the global batch, split evenly over the replicas.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Optional

import tensorflow as tf

from deeplab.training import peer_wait

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def create_strategy(
    name: str = "default", tpu: Optional[str] = None, connect_timeout_secs: float = 600
) -> tf.distribute.Strategy:
    """Builds the strategy called `name` (see the module docstring); `multi_worker` waits at
    most `connect_timeout_secs` for the other workers (see `peer_wait`)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable")
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        # Ring all-reduce works on CPUs and GPUs alike; NCCL is picked on GPUs by AUTO.
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
        )
        peer_wait.wait_for_peers(connect_timeout_secs)
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver, communication_options=options
        )
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"--strategy={name!r} is not one of {STRATEGIES}")


def task_info(strategy: tf.distribute.Strategy):
    """(task_type, task_id) of this process; (None, None) outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the process that writes the real checkpoints and summaries."""
    task_type, task_id = task_info(strategy)
    if task_type is None or isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    if task_type == "chief":
        return True
    if task_type == "worker":
        # Worker 0 is the chief unless the cluster names a separate chief.
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
        return "chief" not in cluster and task_id == 0
    return False


def worker_dir(logdir: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process writes: `logdir` for the chief, a private temp dir otherwise.

    Every worker has to take part in saving (the variables are synchronised), but only the
    chief's copy is kept (TF multi-worker guide); the others write under
    `logdir/.worker_tmp/<type>_<id>` and delete it after each save.
    """
    if is_chief(strategy):
        return logdir
    task_type, task_id = task_info(strategy)
    return os.path.join(logdir, ".worker_tmp", f"{task_type}_{task_id}")


def remove_worker_dir(path: str, logdir: str) -> None:
    if os.path.abspath(path) != os.path.abspath(logdir):
        shutil.rmtree(path, ignore_errors=True)
