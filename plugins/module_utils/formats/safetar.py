# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Member access to image archives without extracting them.

A *source* gives the files of an archive by their archive path: ``TarSource``
for a tar file (plain: real seeks over the entries; compressed: one forward
pass, scanned only as far as needed) and ``DirSource`` for a directory (an
OCI layout). Both refuse anything that could escape the archive.
"""

import json
import os
import posixpath
import tarfile

from ..compression import NONE, DecompressingReader, ForwardSeekable, detect_file
from ..digest import CHUNK_SIZE, FileRegion, HashingReader, ReadStream, drain
from ..errors import ArchiveError, CompressionError, EntryNotFoundError, UnsafeArchiveError

MAX_JSON_SIZE = 16 * 1024 * 1024
MAX_LINK_DEPTH = 16
MAX_EXTENDED_HEADER = 1024 * 1024
MAX_ENTRIES = 200000
MAX_PADDING = 16 * 1024 * 1024
# tarfile raises TarError for bad headers, but ValueError (UnicodeDecodeError too) from PAX records it cannot parse:
# GNU sparse maps, hdrcharset
_TAR_PARSE_ERRORS = (tarfile.TarError, ValueError)
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_REFUSED_TYPES = {
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
    tarfile.GNUTYPE_SPARSE: "sparse file",
}


def clean_member_name(name, label):
    """The canonical archive path of ``name``; refuses absolute paths and ``..``."""
    if not name or "\x00" in name:
        raise UnsafeArchiveError("%s: entry with an empty or NUL-containing name" % label)
    if name.startswith("/"):
        raise UnsafeArchiveError("%s: entry %r has an absolute path; refusing to read it" % (label, name))
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError("%s: entry %r contains '..'; refusing a path that could leave the archive" % (label, name))
    return "/".join(parts)


class _Member:
    __slots__ = ("name", "kind", "size", "offset", "target")

    def __init__(self, name, kind, size=0, offset=0, target=None):
        self.name = name
        self.kind = kind  # "file", "dir", "symlink" or "hardlink"
        self.size = size
        self.offset = offset
        self.target = target


class BoundedReader(ReadStream):
    """Exactly ``size`` bytes of ``stream``; fewer means the archive is truncated."""

    def __init__(self, stream, size, what, owns_stream=True):
        super().__init__()
        self._stream = stream
        self._left = size
        self._what = what
        self._owns = owns_stream

    def read(self, size=-1):
        if self._left <= 0:
            return b""
        want = self._left if size is None or size < 0 else min(size, self._left)
        data = self._stream.read(want)
        if not data:
            raise ArchiveError("%s: archive is truncated (%d bytes of this entry missing)" % (self._what, self._left))
        self._left -= len(data)
        return data

    def close(self):
        if not self.closed and self._owns:
            self._stream.close()
        super().close()


class _Source:
    """What both sources share: link resolution and JSON reading."""

    label = "archive"

    def _lookup(self, name):
        raise NotImplementedError

    def _open_member(self, member):
        raise NotImplementedError

    def resolve(self, name):
        """The regular-file member that ``name`` designates, following links inside the archive."""
        wanted = clean_member_name(name, self.label)
        current = wanted
        for _depth in range(MAX_LINK_DEPTH):
            member = self._lookup(current)
            if member is None:
                if current == wanted:
                    raise EntryNotFoundError("%s: no entry %r" % (self.label, wanted))
                raise UnsafeArchiveError("%s: entry %r links to %r, which is not in the archive" % (self.label, wanted, current))
            if member.kind == "file":
                return member
            if member.kind == "dir":
                raise EntryNotFoundError("%s: entry %r is a directory, expected a file" % (self.label, wanted))
            current = member.target
        raise UnsafeArchiveError("%s: entry %r: too many levels of links" % (self.label, wanted))

    def exists(self, name):
        """Whether ``name`` is a file of the archive; a hostile name, a broken link or a corrupt archive is an error."""
        try:
            self.resolve(name)
        except EntryNotFoundError:
            return False
        return True

    def size(self, name):
        return self.resolve(name).size

    def region(self, name):
        """The FileRegion of the bytes of file ``name`` where they lie as they are in a plain file, or None (a
        compressed archive, or no such file)."""
        try:
            return self._region(self.resolve(name))
        except EntryNotFoundError:
            return None

    def _region(self, member):
        raise NotImplementedError

    def open(self, name):
        """A stream of the bytes of file ``name`` (links followed)."""
        return self._open_member(self.resolve(name))

    def read_bytes(self, name, limit=MAX_JSON_SIZE):
        member = self.resolve(name)
        if member.size > limit:
            raise ArchiveError("%s: entry %r is %d bytes, more than the %d allowed for metadata"
                               % (self.label, name, member.size, limit))
        with self._open_member(member) as stream:
            return stream.read()

    def read_json(self, name, limit=MAX_JSON_SIZE):
        data = self.read_bytes(name, limit)
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise ArchiveError("%s: entry %r is not valid JSON: %s" % (self.label, name, err)) from None


class _HeaderStream(ReadStream):
    """The scan stream as tarfile sees it: seeks pass through; one read (a header, a PAX or GNU long-name
    record) may not exceed MAX_EXTENDED_HEADER, so a header claiming gigabytes is refused instead of read into memory."""

    def __init__(self, stream, label):
        super().__init__()
        self._stream = stream
        self._label = label

    def read(self, size=-1):
        if size is None or size < 0 or size > MAX_EXTENDED_HEADER:
            raise UnsafeArchiveError("%s: a tar extended header of %s bytes; refusing more than %d"
                                     % (self._label, "unbounded" if size is None or size < 0 else size, MAX_EXTENDED_HEADER))
        return self._stream.read(size)

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        return self._stream.seek(offset, whence)

    def tell(self):
        return self._stream.tell()


def _link_target(member_name, linkname, kind, label):
    if linkname.startswith("/"):
        raise UnsafeArchiveError("%s: %s %r points at absolute path %r" % (label, kind, member_name, linkname))
    base = posixpath.dirname(member_name) if kind == "symlink" else ""
    joined = posixpath.normpath(posixpath.join(base, linkname))
    if joined == ".." or joined.startswith("../"):
        raise UnsafeArchiveError("%s: %s %r points outside the archive (%r)" % (label, kind, member_name, linkname))
    return joined


class TarSource(_Source):
    """The members of a tar archive file, plain or compressed as a whole."""

    def __init__(self, path):
        self.path = path
        self.label = path
        self.compression = detect_file(path)
        self._members = {}
        self._complete = False
        self._last_name = None
        if self.compression == NONE:
            self._file_size = os.path.getsize(path)
            self._scan_stream = open(path, "rb")
        else:
            self._file_size = None
            self._scan_stream = ForwardSeekable(self._open_decompressed)
            self._data_stream = None
        self._tar = self._start_scan()
        if self.compression == NONE:
            self._scan_to(None)

    @property
    def file_size(self):
        """The size of the (uncompressed) tar file as it was opened."""
        return self._file_size

    def _open_decompressed(self):
        return DecompressingReader(open(self.path, "rb"), self.compression, self.path)

    def _start_scan(self):
        try:
            return tarfile.TarFile(fileobj=_HeaderStream(self._scan_stream, self.path), mode="r")
        except _TAR_PARSE_ERRORS as err:
            self.close()
            raise ArchiveError("%s: not a tar archive (%s); expected an image archive such as `docker save` writes"
                               % (self.path, err)) from None
        except ArchiveError:
            self.close()
            raise

    def close(self):
        for stream in (self._scan_stream, getattr(self, "_data_stream", None)):
            if stream is not None:
                stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _next_member(self):
        try:
            info = self._tar.next()
        except _TAR_PARSE_ERRORS as err:
            raise ArchiveError("%s: corrupt tar archive after entry %r: %s" % (self.path, self._last_name, err)) from None
        except CompressionError as err:
            raise CompressionError("%s (after entry %r)" % (err, self._last_name)) from None
        self._tar.members = []  # tarfile keeps every header it read; we index our own members
        if info is None:
            self._check_end()
            self._complete = True
            return None
        self._last_name = info.name
        if len(self._members) >= MAX_ENTRIES:
            raise UnsafeArchiveError("%s: more than %d entries (at %r); image archives hold far fewer"
                                     % (self.path, MAX_ENTRIES, info.name))
        return info

    def _check_end(self):
        """The tar must end with its end-of-archive block (a file cut between two entries has none), then zeros only.

        Reading the padding to its end also reads a compressed stream to its end, where its checksum is checked.
        """
        self._scan_stream.seek(self._tar.offset)
        end = self._scan_stream.read(tarfile.BLOCKSIZE)
        if len(end) < tarfile.BLOCKSIZE and not end.strip(b"\x00"):
            raise ArchiveError("%s: archive is truncated after entry %r: it ends without the tar end-of-archive marker"
                               % (self.path, self._last_name))
        padding = 0
        while end:
            if end.strip(b"\x00"):
                raise ArchiveError("%s: corrupt or truncated tar archive: no valid header at offset %d (after entry %r)"
                                   % (self.path, self._tar.offset + padding, self._last_name))
            padding += len(end)
            if padding > MAX_PADDING:
                raise ArchiveError("%s: more than %d bytes of padding after the end-of-archive marker (after entry %r)"
                                   % (self.path, MAX_PADDING, self._last_name))
            end = self._scan_stream.read(CHUNK_SIZE)

    def _scan_to(self, wanted):
        while not self._complete:
            info = self._next_member()
            if info is None:
                return None
            member = self._add(info)
            if wanted is not None and member.name == wanted:
                return member
        return None

    def _add(self, info):
        name = clean_member_name(info.name, self.path)
        if info.size < 0:
            raise UnsafeArchiveError("%s: entry %r has a negative size (%d)" % (self.path, info.name, info.size))
        if info.type in _REFUSED_TYPES:
            raise UnsafeArchiveError("%s: entry %r is a %s; image archives hold only files, directories and links"
                                     % (self.path, info.name, _REFUSED_TYPES[info.type]))
        if info.type in _FILE_TYPES:
            member = _Member(name, "file", info.size, info.offset_data)
            if self._file_size is not None and info.offset_data + info.size > self._file_size:
                raise ArchiveError("%s: archive is truncated: entry %r needs %d bytes beyond the end of the file"
                                   % (self.path, name, info.offset_data + info.size - self._file_size))
        elif info.type == tarfile.DIRTYPE:
            member = _Member(name, "dir")
        elif info.type == tarfile.SYMTYPE:
            member = _Member(name, "symlink", target=_link_target(name, info.linkname, "symlink", self.path))
        elif info.type == tarfile.LNKTYPE:
            target = _link_target(name, info.linkname, "hardlink", self.path)
            if target not in self._members:
                raise UnsafeArchiveError("%s: hardlink %r points at %r, which is not an earlier entry of the archive"
                                         % (self.path, name, info.linkname))
            member = _Member(name, "hardlink", target=target)
        else:
            raise UnsafeArchiveError("%s: entry %r has unsupported tar type %r" % (self.path, info.name, info.type))
        previous = self._members.get(name)
        if previous is not None:
            self._check_duplicate(previous, member)
            return previous
        self._members[name] = member
        return member

    def _check_duplicate(self, first, second):
        same = first.kind == second.kind and first.size == second.size and first.target == second.target
        if same and first.kind == "file":
            same = self._content_digest(first) == self._content_digest(second)
        if not same and not (first.kind == second.kind == "dir"):
            raise UnsafeArchiveError("%s: entry %r appears twice with different content; refusing an ambiguous archive"
                                     % (self.path, first.name))

    def _content_digest(self, member):
        with self._open_member(member) as stream:
            reader = HashingReader(stream)
            drain(reader)
            return reader.digest

    def _lookup(self, name):
        member = self._members.get(name)
        if member is None and not self._complete:
            member = self._scan_to(name)
        return member

    def names(self):
        """Every regular file in the archive (scans to the end)."""
        self._scan_to(None)
        return sorted(name for name, member in self._members.items() if member.kind != "dir")

    def _region(self, member):
        return FileRegion(self.path, member.offset, member.size) if self.compression == NONE else None

    def _open_member(self, member):
        what = "%s: entry %r" % (self.path, member.name)
        if self.compression == NONE:
            handle = open(self.path, "rb")
            handle.seek(member.offset)
            return BoundedReader(handle, member.size, what)
        if self._data_stream is None:
            self._data_stream = ForwardSeekable(self._open_decompressed)
        self._data_stream.seek(member.offset)
        return BoundedReader(self._data_stream, member.size, what, owns_stream=False)


class DirSource(_Source):
    """The files of a directory (an OCI image layout), confined to it."""

    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.label = root
        self.compression = NONE

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def _lookup(self, name):
        path = os.path.join(self.root, *name.split("/"))
        real = os.path.realpath(path)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise UnsafeArchiveError("%s: %r resolves outside the directory (%s)" % (self.label, name, real))
        if os.path.isdir(real):
            return _Member(name, "dir")
        if not os.path.exists(real):
            return None
        if not os.path.isfile(real):
            raise UnsafeArchiveError("%s: %r is not a regular file" % (self.label, name))
        return _Member(name, "file", os.path.getsize(real), target=real)

    def _region(self, member):
        return FileRegion(member.target, 0, member.size)

    def _open_member(self, member):
        handle = open(member.target, "rb")
        return BoundedReader(handle, member.size, "%s: %r" % (self.label, member.name))

    def names(self):
        found = []
        for folder, _dirs, files in os.walk(self.root):
            for filename in files:
                rel = os.path.relpath(os.path.join(folder, filename), self.root)
                found.append(rel.replace(os.sep, "/"))
        return sorted(found)


def open_source(path):
    """A TarSource for an archive file, a DirSource for a directory."""
    if os.path.isdir(path):
        return DirSource(path)
    if not os.path.exists(path):
        raise ArchiveError("%s: no such file or directory" % path)
    if not os.path.isfile(path):
        raise ArchiveError("%s: not a regular file or directory; an image archive is one or the other" % path)
    return TarSource(path)
