"""Atomic exports: a folder or file is written beside its final path, then swapped into place.

A kill at any moment leaves either the previous export, whole, or the new one, whole; never a
mix of both (an old `model.tflite` beside a new SavedModel) nor a half-written one. A folder
swap uses Linux `renameat2(RENAME_EXCHANGE)` (one atomic step), else two renames (a kill
between them leaves the old export in a hidden `.NAME.old-*` folder beside it).

An existing folder is only replaced when it is empty or a previous export (it holds
`saved_model.pb` or `assets.extra/deeplab_export.json`): a user's folder given by mistake is
refused, not deleted.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import re
import shutil
import tempfile
from typing import Iterator, List

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_EXPORT_MARKS = ("saved_model.pb", os.path.join("assets.extra", "deeplab_export.json"))


class ExportPathError(ValueError):
    """The export path holds something that is not a previous export."""


def check_export_path(path: str) -> None:
    """Raises ExportPathError when `path` is a file, or a non-empty folder that is not a
    previous export (an export would replace it whole)."""
    if os.path.isfile(path):
        raise ExportPathError(f"--export_path={path} is a file; give a folder for the SavedModel")
    if not os.path.isdir(path) or not os.listdir(path):
        return
    if not any(os.path.exists(os.path.join(path, mark)) for mark in _EXPORT_MARKS):
        raise ExportPathError(
            f"--export_path={path} holds files that are not an export of this tool (no "
            "saved_model.pb); an export replaces the whole folder: give a new or empty one"
        )


def export_files(folder: str) -> List[str]:
    """The files under `folder`, as sorted paths relative to it."""
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder)
        for name in names
    )


def _exchange(a: str, b: str) -> bool:
    """Swaps two paths in one atomic step; False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _remove_leftovers(path: str) -> None:
    """Deletes the hidden temp folders and files of killed exports of `path`."""
    parent, name = os.path.split(path)
    pattern = re.compile(rf"^\.{re.escape(name)}\.(tmp|old)-(\d+)-")
    for leftover in glob.glob(os.path.join(parent, f".{glob.escape(name)}.*-*")):
        match = pattern.match(os.path.basename(leftover))
        if match and not _pid_alive(int(match.group(2))):
            if os.path.isdir(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                os.remove(leftover)


def _sibling(path: str, kind: str, folder: bool) -> str:
    parent, name = os.path.split(path)
    make = tempfile.mkdtemp if folder else tempfile.mkstemp
    made = make(prefix=f".{name}.{kind}-{os.getpid()}-", dir=parent)
    if not folder:
        os.close(made[0])
        return made[1]
    return made


@contextlib.contextmanager
def staged_folder(path: str) -> Iterator[str]:
    """Yields an empty temp folder beside `path`; when the block succeeds, the folder replaces
    `path` whole (see `check_export_path`); when it fails, the temp folder is deleted and
    `path` is left as it was."""
    path = os.path.abspath(path)
    check_export_path(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _remove_leftovers(path)
    temp = _sibling(path, "tmp", folder=True)
    try:
        yield temp
        check_export_path(path)  # still a previous export (or nothing) now that we replace it
        if not os.path.exists(path):
            os.rename(temp, path)
        elif _exchange(temp, path):
            shutil.rmtree(temp)  # now the old export
        else:
            old = _sibling(path, "old", folder=True)
            os.rename(path, os.path.join(old, "export"))
            os.rename(temp, path)
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def write_file(path: str, content: bytes) -> None:
    """Writes `content` to `path` atomically (a temp file beside it, then renamed)."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp = _sibling(path, "tmp", folder=False)
    try:
        with open(temp, "wb") as f:
            f.write(content)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
