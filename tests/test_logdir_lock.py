"""One trainer per log dir: the lock refuses a live holder and takes over a dead one's."""

import json
import multiprocessing
import os
import pathlib
import socket
import subprocess
import sys

import pytest

from deeplab.training import logdir_lock
from tests import helpers


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
    assert capfd.readouterr().err.count(f"taking over the stale lock {tmp_path}") == 1
    lock.release()
    # A live pid that started at another time is another process: the lock is stale too.
    _write_lock(tmp_path, pid=os.getppid(), host=socket.gethostname(), start="-1")
    assert logdir_lock.LogdirLock(str(tmp_path)).acquire().held


def test_a_lock_from_another_host_is_refused(tmp_path):
    _write_lock(tmp_path, pid=1234, host="elsewhere", start=None)
    with pytest.raises(logdir_lock.LogdirLockedError, match="on host elsewhere"):
        logdir_lock.LogdirLock(str(tmp_path)).acquire()


def _race(logdirs, barrier, results):
    """One of two racers: tries each log dir right after the other racer is ready too."""
    for logdir in logdirs:
        barrier.wait()
        try:
            won = logdir_lock.LogdirLock(logdir).acquire().held
        except Exception as err:  # noqa: BLE001 - reported to the test, not swallowed
            won = f"{type(err).__name__}: {err}"
        results.put((logdir, os.getpid(), won))


def test_two_trainers_racing_for_a_stale_lock_exactly_one_wins(tmp_path):
    rounds = 30
    logdirs = [str(tmp_path / f"run{i}") for i in range(rounds)]
    for logdir in logdirs:  # Stale: a live pid that started at another time.
        _write_lock(pathlib.Path(logdir), pid=os.getpid(), host=socket.gethostname(), start="-1")
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    racers = [context.Process(target=_race, args=(logdirs, barrier, results)) for _ in range(2)]
    for racer in racers:
        racer.start()
    outcomes = [results.get(timeout=60) for _ in range(2 * rounds)]
    for racer in racers:
        racer.join(timeout=60)
    for logdir in logdirs:
        mine = [(pid, won) for d, pid, won in outcomes if d == logdir]
        winners = [pid for pid, won in mine if won is True]
        assert len(winners) == 1, (logdir, mine)
        losers = [won for _, won in mine if won is not True]
        assert "LogdirLockedError" in losers[0] and f"pid {winners[0]}" in losers[0], losers
        with open(os.path.join(logdir, logdir_lock.LOCK_FILE)) as f:
            assert json.load(f)["pid"] == winners[0]
        assert os.listdir(logdir) == [logdir_lock.LOCK_FILE]  # no temp file left


def test_a_trainer_that_fails_to_start_releases_the_lock(tmp_path):
    from deeplab.training import Trainer

    def full_disk(options):
        raise OSError(28, "No space left on device", str(tmp_path / "events"))

    with pytest.raises(OSError, match="No space left"):
        Trainer(
            helpers.make_config(tmp_path), dataset_fn=helpers.fixed_batches(), model_fn=full_disk
        )
    assert not (tmp_path / logdir_lock.LOCK_FILE).exists()
