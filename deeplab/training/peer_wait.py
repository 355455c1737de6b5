"""Waiting for the other workers of a multi-worker run: bounded, said, and interruptible.

Creating a `MultiWorkerMirroredStrategy` blocks inside TensorFlow, holding the GIL, until every
worker of `TF_CONFIG` has connected, with no time limit: no Python code runs meanwhile (Ctrl-C
does nothing) and TensorFlow's preemption notifier takes SIGTERM over (it only logs it). So
`wait_for_peers` waits in Python first: each worker listens on its own cluster port and polls
the others' ports until every one accepts (a peer in this wait, or already in TensorFlow's,
whose server listens on the same port), saying what it waits for, and raises after
`timeout_secs` or on SIGINT / SIGTERM. Then TensorFlow's own connection is quick.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import threading
import time
from typing import List, Tuple

NOTE_EVERY_SECS = 60
_POLL_SECS = 0.5


class PeersNotConnectedError(RuntimeError):
    """The other workers did not connect in time; the message names them and what to do."""


class WaitInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped the wait (`signum`)."""

    def __init__(self, signum: int):
        super().__init__(
            f"Stopped by {signal.Signals(signum).name} while waiting for the other workers."
        )
        self.signum = signum


def _cluster() -> Tuple[Tuple[str, int], List[Tuple[str, str]]]:
    """(this task's port, [(name, address) of every other task]) from TF_CONFIG."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    own, others = None, []
    for kind, addresses in config.get("cluster", {}).items():
        for index, address in enumerate(addresses):
            if (kind, index) == (task.get("type"), task.get("index")):
                own = address
            else:
                others.append((f"{kind} {index}", address))
    port = int(own.rsplit(":", 1)[1]) if own and ":" in own else None
    return port, others


def _reachable(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


def _listen(port) -> socket.socket | None:
    """A socket listening on this task's cluster port, so that the peers see this worker;
    None where the port is taken (e.g. TensorFlow's server already runs in this process)."""
    if port is None:
        return None
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", port))
        listener.listen(16)
    except OSError:
        listener.close()
        return None
    return listener


def _describe(peers) -> str:
    return ", ".join(f"{name} ({address})" for name, address in peers)


def wait_for_peers(timeout_secs: float) -> None:
    """Returns once every other task of TF_CONFIG accepts connections on its port; says what
    it waits for on stderr (and again every minute). Raises PeersNotConnectedError after
    `timeout_secs`, WaitInterrupted on SIGINT / SIGTERM (in the main thread)."""
    port, pending = _cluster()
    if not pending:
        return
    listener = _listen(port)
    previous = {}

    def interrupt(signum, frame):
        raise WaitInterrupted(signum)

    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(
            f"Waiting up to {timeout_secs:.0f} s for the other workers to connect: "
            f"{_describe(pending)}.",
            file=sys.stderr,
            flush=True,
        )
        start = time.monotonic()
        next_note = start + NOTE_EVERY_SECS
        while True:
            pending = [(name, address) for name, address in pending if not _reachable(address)]
            if not pending:
                return
            waited = time.monotonic() - start
            if waited >= timeout_secs:
                raise PeersNotConnectedError(
                    f"{_describe(pending)} did not connect within {timeout_secs:.0f} s "
                    "(--worker_connect_timeout_secs). Start train.py with the same flags on "
                    "every worker of TF_CONFIG (each with its own task index), then run this "
                    "command again."
                )
            if time.monotonic() >= next_note:
                print(
                    f"Still waiting for {_describe(pending)} ({waited:.0f} s of "
                    f"{timeout_secs:.0f} s).",
                    file=sys.stderr,
                    flush=True,
                )
                next_note += NOTE_EVERY_SECS
            time.sleep(_POLL_SECS)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if listener is not None:
            listener.close()


_TASK = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")
_PEER_LOST = ("UnavailableError", "DeadlineExceededError", "AbortedError", "CancelledError")


def lost_peer_message(err: BaseException, train_logdir: str) -> str | None:
    """A few lines for a multi-worker run that lost a worker (`err`, a TensorFlow error of the
    collective ops or the coordination service): which worker, and how to resume. None for
    any other error, or outside a cluster."""
    if not os.environ.get("TF_CONFIG") or type(err).__name__ not in _PEER_LOST:
        return None
    task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
    text = str(err)
    peers = [
        f"{kind} {index}"
        for kind, index in _TASK.findall(text)
        if (kind, int(index)) != (task.get("type"), task.get("index"))
    ]
    who = peers[0] if peers else "another worker"
    first = (text.strip().splitlines() or [type(err).__name__])[0][:200]
    return (
        f"ERROR: lost contact with {who} of the cluster ({type(err).__name__}: {first}).\n"
        "Training stopped on this worker. Start every worker of TF_CONFIG again with the same "
        f"command: they resume together from the chief's last checkpoint in {train_logdir}."
    )
