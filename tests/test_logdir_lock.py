"""One trainer per log dir: the lock refuses a live holder and takes over a dead one's."""

import json
import os
import socket
import subprocess
import sys

import pytest

from deeplab.training import logdir_lock


def _write_lock(logdir, **holder):
    logdir.mkdir(exist_ok=True)
    with open(logdir / logdir_lock.LOCK_FILE, "w") as f:
        json.dump(holder, f)


def test_acquire_release_and_reentry_in_one_process(tmp_path):
    lock = logdir_lock.LogdirLock(str(tmp_path / "run")).acquire()
    path = tmp_path / "run" / logdir_lock.LOCK_FILE
    with open(path) as f:
        holder = json.load(f)
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    # A second trainer object in the same process (e.g. a resumed run in a test) may use it.
    again = logdir_lock.LogdirLock(str(tmp_path / "run")).acquire()
    assert again.held
    lock.release()
    assert not path.exists()


def test_a_live_trainer_on_this_host_is_named_and_refused(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(
            tmp_path,
            pid=sleeper.pid,
            host=socket.gethostname(),
            start=logdir_lock._process_start(sleeper.pid),
        )
        with pytest.raises(logdir_lock.LogdirLockedError) as err:
            logdir_lock.LogdirLock(str(tmp_path)).acquire()
        assert f"pid {sleeper.pid} on {socket.gethostname()}" in str(err.value)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_dead_or_reused_pid_is_taken_over_with_a_warning(tmp_path, capfd):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _write_lock(tmp_path, pid=gone.pid, host=socket.gethostname(), start="1")
    lock = logdir_lock.LogdirLock(str(tmp_path)).acquire()
    assert lock.held
    assert f"taking over the stale lock {tmp_path}" in capfd.readouterr().err
    lock.release()
    # A live pid that started at another time is another process: the lock is stale too.
    _write_lock(tmp_path, pid=os.getppid(), host=socket.gethostname(), start="-1")
    assert logdir_lock.LogdirLock(str(tmp_path)).acquire().held


def test_a_lock_from_another_host_is_refused(tmp_path):
    _write_lock(tmp_path, pid=1234, host="elsewhere", start=None)
    with pytest.raises(logdir_lock.LogdirLockedError, match="on host elsewhere"):
        logdir_lock.LogdirLock(str(tmp_path)).acquire()
