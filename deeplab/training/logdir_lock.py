"""One trainer per log dir: a lock file in `train_logdir` naming the process that holds it.

`train.lock` holds `{"pid", "host", "start"}` (start: the process start time from /proc, so
that a reused pid is not mistaken for the trainer). A second trainer on the same directory
stops with `LogdirLockedError` naming the running one. A lock whose process is gone (a
SIGKILLed run) is taken over with a warning line. The lock is created with O_EXCL on local
file systems; on remote ones (gs://...) the check is best effort.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Optional

import tensorflow as tf

LOCK_FILE = "train.lock"


class LogdirLockedError(RuntimeError):
    """Another live trainer holds the lock of this log dir."""


def _process_start(pid: int) -> Optional[str]:
    """The start time of process `pid` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Field 22; the command name (field 2) may hold spaces, so split after its ')'.
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: Optional[str]) -> bool:
    """Whether process `pid` on this host runs and is the one that took the lock."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # It exists but belongs to another user.
    current = _process_start(pid)
    return start is None or current is None or current == start


def _owner() -> dict:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "start": _process_start(pid)}


def _read(path: str) -> Optional[dict]:
    try:
        with tf.io.gfile.GFile(path) as f:
            return json.loads(f.read() or "{}")
    except (tf.errors.NotFoundError, FileNotFoundError):
        return None
    except ValueError:
        return {}  # Empty or garbled: a writer was killed between create and write.


def _create(path: str, owner: dict) -> bool:
    """Creates the lock file holding `owner`; False if it exists already."""
    text = json.dumps(owner)
    if "://" in path:
        if tf.io.gfile.exists(path):
            return False
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text)
        return True
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


class LogdirLock:
    """The lock of one log dir; `acquire()` then `release()` (or use it as a context)."""

    def __init__(self, logdir: str):
        self.logdir = logdir
        self.path = os.path.join(logdir, LOCK_FILE)
        self.held = False

    def acquire(self) -> "LogdirLock":
        """Takes the lock, or raises LogdirLockedError naming the live trainer holding it."""
        tf.io.gfile.makedirs(self.logdir)
        me = _owner()
        for _ in range(3):
            if _create(self.path, me):
                self.held = True
                return self
            holder = _read(self.path)
            if holder is None:
                continue  # Released in between: try again.
            pid, host = holder.get("pid"), holder.get("host")
            if pid == me["pid"] and host == me["host"]:
                self.held = True  # Ours already (a second Trainer in this process).
                return self
            if host == me["host"] and isinstance(pid, int) and _alive(pid, holder.get("start")):
                raise LogdirLockedError(
                    f"{self.logdir} is in use by another trainer (pid {pid} on {host}); "
                    f"stop it or use another --train_logdir (lock file {self.path})."
                )
            if host not in (None, me["host"]):
                raise LogdirLockedError(
                    f"{self.logdir} is locked by a trainer on host {host} (pid {pid}); if it "
                    f"is no longer running, delete {self.path}."
                )
            message = (
                f"WARNING: taking over the stale lock {self.path} of a trainer that is no "
                f"longer running (pid {pid} on {host})."
            )
            print(message, file=sys.stderr, flush=True)  # once: not also as a log record
            tf.io.gfile.remove(self.path)
        raise LogdirLockedError(f"Could not take the lock {self.path}: it keeps changing.")

    def release(self) -> None:
        """Removes the lock file if this process holds it."""
        if not self.held:
            return
        self.held = False
        holder = _read(self.path)
        me = _owner()
        if holder and holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
            tf.io.gfile.remove(self.path)

    def __enter__(self) -> "LogdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
