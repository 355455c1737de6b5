"""A read-only or full output folder ends a command line with one line: the path and the fix."""

import errno

import pytest
import tensorflow as tf

from deeplab.cli import flags as cli_flags


def _run(error, flag):
    def body():
        raise error

    return cli_flags.run_reporting_missing_files(body, flag)


@pytest.mark.parametrize(
    "error, flag, expected",
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "/ro/run/train.lock.1.tmp"),
            "--train_logdir",
            "/ro/run/train.lock.1.tmp: Permission denied; give --train_logdir a folder",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/ckpt/eval"),
            "--eval_logdir",
            "/ckpt/eval: Read-only file system; give --eval_logdir a folder you can write to",
        ),
        (
            tf.errors.PermissionDeniedError(None, None, "/ckpt/eval; Permission denied"),
            "--eval_logdir",
            "/ckpt/eval; Permission denied; give --eval_logdir a folder",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/full/run/events"),
            "--train_logdir",
            "/full/run/events: No space left on device; free space on that disk and run again "
            "(training resumes from its last checkpoint)",
        ),
        (
            tf.errors.UnknownError(
                None, None, "/full/x.data-00000-of-00001; No space left on device"
            ),
            "--export_path",
            "/full/x.data-00000-of-00001; No space left on device; free space on that disk",
        ),
    ],
)
def test_write_failures_give_one_line_naming_the_path_and_the_fix(capsys, error, flag, expected):
    assert _run(error, flag) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ERROR: ") and expected in err, err


def test_other_errors_are_not_disguised():
    with pytest.raises(ValueError):
        _run(ValueError("a bug"), "--train_logdir")
    with pytest.raises(tf.errors.InvalidArgumentError):
        _run(tf.errors.InvalidArgumentError(None, None, "bad shape"), "--train_logdir")
