# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files that appear whole or not at all."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_file(path, mode=0o644):
    """Yield a binary file that becomes ``path`` when the block ends without error.

    The data goes to a temp file beside ``path``, is fsynced and renamed over
    it; on any error the temp file is removed and ``path`` is left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
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
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
