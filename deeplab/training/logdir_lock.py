"""One trainer per log dir: a lock file in `train_logdir` naming the process that holds it.

`train.lock` holds `{"pid", "host", "start"}` (start: the process start time from /proc, so
that a reused pid is not mistaken for the trainer). A second trainer on the same directory
stops with `LogdirLockedError` naming the running one. A lock whose process is gone (a
SIGKILLed run) is taken over with one warning line.

On local file systems both steps are atomic, so of trainers started together exactly one
wins: the lock is written to a private temp file and hard-linked into place (a link fails
when the lock exists, and the lock is never seen empty), and a stale lock is taken over
under an exclusive `flock` of the log dir (released by the kernel if its holder dies), after
checking that the lock is still the stale one. On remote file systems (gs://...) the check
is best effort.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import uuid
from typing import Iterator, Optional

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


def _remote(path: str) -> bool:
    return "://" in path


def _read(path: str) -> Optional[dict]:
    try:
        if _remote(path):
            with tf.io.gfile.GFile(path) as f:
                text = f.read()
        else:
            with open(path) as f:
                text = f.read()
        holder = json.loads(text or "{}")
    except (tf.errors.NotFoundError, FileNotFoundError):
        return None
    except ValueError:
        return {}  # Garbled (or an empty lock of an older version killed while writing it).
    return holder if isinstance(holder, dict) else {}


def _create(path: str, owner: dict) -> bool:
    """Creates the lock file holding `owner` in one atomic step; False if it exists already."""
    text = json.dumps(owner)
    if _remote(path):
        if tf.io.gfile.exists(path):
            return False
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text)
        return True
    temp = f"{path}.{owner['pid']}.{uuid.uuid4().hex}.tmp"
    with open(temp, "w") as f:
        f.write(text)
    try:
        os.link(temp, path)  # fails if the lock exists; never shows a half-written lock
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
    finally:
        os.remove(temp)
    return True


def _remove(path: str) -> None:
    try:
        if _remote(path):
            tf.io.gfile.remove(path)
        else:
            os.remove(path)
    except (tf.errors.NotFoundError, FileNotFoundError):
        pass


@contextlib.contextmanager
def _takeover_guard(logdir: str) -> Iterator[None]:
    """Holds an exclusive flock of the log dir: one stale-lock takeover at a time."""
    if _remote(logdir):
        yield
        return
    fd = os.open(logdir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


class LogdirLock:
    """The lock of one log dir; `acquire()` then `release()` (or use it as a context)."""

    def __init__(self, logdir: str):
        self.logdir = logdir
        self.path = os.path.join(logdir, LOCK_FILE)
        self.held = False

    def acquire(self) -> "LogdirLock":
        """Takes the lock, or raises LogdirLockedError naming the live trainer holding it."""
        if _remote(self.logdir):
            tf.io.gfile.makedirs(self.logdir)
        else:
            os.makedirs(self.logdir, exist_ok=True)
        me = _owner()
        warned = False
        for _ in range(5):
            if _create(self.path, me):
                self.held = True
                return self
            holder = _read(self.path)
            if holder is None:
                continue  # Released in between: try again.
            self._check_holder(holder, me)
            if self.held:
                return self
            with _takeover_guard(self.logdir):
                if _read(self.path) != holder:
                    continue  # Taken over or released meanwhile: look again.
                if not warned:
                    print(
                        f"WARNING: taking over the stale lock {self.path} of a trainer that is "
                        f"no longer running (pid {holder.get('pid')} on {holder.get('host')}).",
                        file=sys.stderr,
                        flush=True,
                    )
                    warned = True
                _remove(self.path)
                if _create(self.path, me):
                    self.held = True
                    return self
        raise LogdirLockedError(f"Could not take the lock {self.path}: it keeps changing.")

    def _check_holder(self, holder: dict, me: dict) -> None:
        """Sets `held` when the lock is this process's; raises LogdirLockedError when a live
        trainer holds it; returns otherwise (the lock is stale)."""
        pid, host = holder.get("pid"), holder.get("host")
        if pid == me["pid"] and host == me["host"]:
            self.held = True  # Ours already (a second Trainer in this process).
            return
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

    def release(self) -> None:
        """Removes the lock file if this process holds it."""
        if not self.held:
            return
        self.held = False
        holder = _read(self.path)
        me = _owner()
        if holder and holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
            _remove(self.path)

    def __enter__(self) -> "LogdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
