# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A deterministic tar writer: the same entries give the same bytes on any machine.

Headers are PAX (long names and >8 GiB sizes get PAX records), mtime 0,
uid/gid 0, no user or group names, fixed modes; the archive ends with two
zero blocks as Go's archive/tar writes it.
"""

import tarfile

from ..digest import CHUNK_SIZE
from ..errors import ArchiveError

BLOCK = tarfile.BLOCKSIZE


class TarWriter:
    def __init__(self, sink):
        self._sink = sink
        self.position = 0

    def _write(self, data):
        self._sink.write(data)
        self.position += len(data)

    def _header(self, name, kind, size=0, mode=0o644, linkname=""):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = size
        info.mode = mode
        info.linkname = linkname
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._write(info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict"))

    def _pad(self, size):
        remainder = size % BLOCK
        if remainder:
            self._write(b"\x00" * (BLOCK - remainder))

    def add_dir(self, name, mode=0o755):
        self._header(name.rstrip("/") + "/", tarfile.DIRTYPE, mode=mode)

    def add_symlink(self, name, target):
        self._header(name, tarfile.SYMTYPE, mode=0o777, linkname=target)

    def add_bytes(self, name, data, mode=0o644):
        self._header(name, tarfile.REGTYPE, len(data), mode)
        self._write(data)
        self._pad(len(data))

    def add_stream(self, name, size, stream, what, mode=0o644):
        """Copy exactly ``size`` bytes of ``stream``, then read it to its end so it can verify itself."""
        self._header(name, tarfile.REGTYPE, size, mode)
        left = size
        while left:
            chunk = stream.read(min(CHUNK_SIZE, left))
            if not chunk:
                raise ArchiveError("%s: ended after %d of %d bytes" % (what, size - left, size))
            self._write(chunk)
            left -= len(chunk)
        if stream.read(1):
            raise ArchiveError("%s: longer than the %d bytes announced" % (what, size))
        self._pad(size)

    @property
    def copies_regions(self):
        """Whether the sink copies file regions itself (``add_region``)."""
        return getattr(self._sink, "copies_regions", False)

    def add_region(self, name, source, digest, what, mode=0o644):
        """File ``name`` with the bytes of ``source`` (a FileRegion of a plain file), which the sink copies and checks
        against ``digest`` (``copies_regions``)."""
        size = source.size
        self._header(name, tarfile.REGTYPE, size, mode)
        self._sink.copy_region(source, digest, what)
        self.position += size
        self._pad(size)

    def close(self):
        self._write(b"\x00" * (2 * BLOCK))
