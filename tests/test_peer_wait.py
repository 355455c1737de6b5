"""--strategy=multi_worker: the wait for the other workers is bounded, said, and SIGTERM or
Ctrl-C stops it (TensorFlow's own wait has no limit and ignores both)."""

import json
import os
import signal
import socket
import threading

import pytest

from deeplab.training import peer_wait
from tests.test_multi_worker import _free_ports


@pytest.fixture
def two_workers(monkeypatch):
    ports = _free_ports(2)
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps(
            {
                "cluster": {"worker": [f"localhost:{p}" for p in ports]},
                "task": {"type": "worker", "index": 0},
            }
        ),
    )
    return ports


@pytest.mark.slow
def test_a_peer_that_never_starts_stops_the_wait_in_time(two_workers, capfd):
    with pytest.raises(peer_wait.PeersNotConnectedError) as err:
        peer_wait.wait_for_peers(1.0)
    message = str(err.value)
    assert message.startswith(f"worker 1 (localhost:{two_workers[1]}) did not connect within 1 s")
    assert "--worker_connect_timeout_secs" in message and "\n" not in message
    waiting = capfd.readouterr().err
    assert "Waiting up to 1 s for the other workers to connect: worker 1 (localhost:" in waiting


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_the_wait(two_workers, signum):
    before = signal.getsignal(signum)
    threading.Timer(0.5, os.kill, (os.getpid(), signum)).start()
    with pytest.raises(peer_wait.WaitInterrupted, match=signal.Signals(signum).name):
        peer_wait.wait_for_peers(30.0)
    assert signal.getsignal(signum) is before


@pytest.mark.slow
def test_a_listening_peer_ends_the_wait_and_this_worker_listens_meanwhile(two_workers):
    with socket.socket() as peer:
        peer.bind(("localhost", two_workers[1]))
        peer.listen()
        peer_wait.wait_for_peers(5.0)
    seen = []

    def probe():
        seen.append(peer_wait._reachable(f"localhost:{two_workers[0]}"))

    timer = threading.Timer(0.3, probe)
    timer.start()
    with pytest.raises(peer_wait.PeersNotConnectedError):
        peer_wait.wait_for_peers(1.0)
    timer.join()
    assert seen == [True]  # the peer sees this worker while it waits


def test_a_lost_peer_is_named_with_the_resume_command(two_workers):
    import tensorflow as tf

    err = tf.errors.UnavailableError(
        None,
        None,
        "Collective ops is aborted by: Task /job:worker/replica:0/task:1 heartbeat timeout.\n"
        + "\n".join(f"detail {i}" for i in range(200)),
    )
    message = peer_wait.lost_peer_message(err, "/runs/mw")
    assert len(message.splitlines()) <= 10
    assert "lost contact with worker 1 of the cluster" in message
    assert "resume together from the chief's last checkpoint in /runs/mw" in message
    assert peer_wait.lost_peer_message(ValueError("x"), "/runs/mw") is None
