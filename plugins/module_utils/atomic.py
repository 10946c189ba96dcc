# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files that appear whole or not at all; free space; one writer per destination."""

import contextlib
import ctypes
import errno
import fcntl
import os
import tempfile

from .errors import ImageError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class NoSpaceError(ImageError):
    """The filesystem a file was being written to is full (or the quota is used up)."""


@contextlib.contextmanager
def atomic_file(path, mode=0o644, expected_size=None):
    """Yield a binary file that becomes ``path`` when the block ends without error.

    The data goes to a temp file beside ``path``, is fsynced and renamed over
    it; on any error the temp file is removed and ``path`` is left as it was.
    A full disk becomes a NoSpaceError naming ``path`` (``expected_size``, when
    known, says how much was needed).
    """
    folder = os.path.dirname(os.path.abspath(path))
    with reporting_full_disk(path, expected_size):  # outermost: free space is measured once the temp file is gone
        handle, temp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(handle, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, mode)
            os.replace(temp, path)
            fsync_dir(folder)
        except BaseException:
            _remove(temp)
            raise


@contextlib.contextmanager
def reporting_full_disk(path, needed=None, what=None, partial=False):
    """Turn a full disk while writing ``path`` (ENOSPC, EDQUOT) into a NoSpaceError that says where and what to do.

    With ``partial``, ``path`` is a temp file its owner removes after this: its bytes count as free.
    """
    try:
        yield
    except OSError as err:
        if err.errno in NO_SPACE:
            reclaimed = os.path.getsize(path) if partial and os.path.isfile(path) else 0
            raise no_space_error(path, needed, what, reclaimed) from None
        raise


def _remove(path):
    if os.path.exists(path):
        os.unlink(path)


def fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_file_range():
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):  # not Linux, or a libc without it
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd, offset, size):
    """Have the kernel start writing ``size`` bytes at ``offset`` of ``fd`` to disk, without waiting for them, so that
    the fsync that makes the file durable finds little left to write. Best effort: nothing happens where the call is
    missing or refused."""
    if _SYNC_FILE_RANGE is not None and size > 0:
        _SYNC_FILE_RANGE(fd, offset, size, _SYNC_FILE_RANGE_WRITE)


def mount_point(path):
    """The mount point of the filesystem that holds ``path`` (which need not exist yet)."""
    current = os.path.abspath(path)
    while not os.path.exists(current):
        current = os.path.dirname(current)
    while not os.path.ismount(current):
        current = os.path.dirname(current)
    return current


def free_bytes(path):
    """Bytes an unprivileged writer may still put on the filesystem holding ``path``."""
    folder = os.path.abspath(path)
    while not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def no_space_error(path, needed=None, what=None, reclaimed=0):
    """A NoSpaceError for writing ``path``: which filesystem, how much is free (and needed), what to do."""
    need = "need about %d bytes, " % needed if needed else ""
    return NoSpaceError("no space left on %s for %s: %s%d bytes free; free some space there or choose a dest on a "
                        "larger filesystem; nothing was changed"
                        % (mount_point(path), what or path, need, free_bytes(path) + reclaimed))


def check_free_space(path, needed, what=None):
    """Fail before writing when ``needed`` bytes (None: unknown) cannot fit beside ``path``."""
    if needed is not None and needed > free_bytes(path):
        raise no_space_error(path, needed, what)


@contextlib.contextmanager
def dest_lock(dest):
    """Hold an exclusive lock on ``dest`` for the block: ``.<name>.lock`` beside it, locked with flock.

    The lock file stays (removing it would let a waiter lock a file that no
    longer has the name); the lock itself ends with the block or the process.
    """
    folder, name = os.path.split(os.path.abspath(dest))
    lock_path = os.path.join(folder, "." + name + ".lock")
    if not os.path.isdir(folder):
        raise ImageError("cannot write %s: directory %s does not exist" % (dest, folder))
    with file_lock(lock_path, dest):
        yield lock_path


@contextlib.contextmanager
def file_lock(lock_path, what):
    """Hold an exclusive flock on ``lock_path`` (created when missing) for the block."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise ImageError("cannot lock %s: %s: %s" % (what, lock_path, err.strerror)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
