# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compression: detection by magic bytes, streaming decompression, deterministic compression.

``isal`` (gzip) and ``zstandard`` (zstd) are used when installed; gzip falls
back to the standard library, zstd then fails with a message saying what to
install. Compressed bytes depend on the compressor, so writers report which
one they used (``compressor_name``).
"""

import bz2
import gzip
import io
import lzma
import zlib

from .digest import ReadStream
from .errors import CompressionError

try:
    from isal import igzip as _isal_gzip
    from isal.igzip_lib import IsalError as _IsalError
except ImportError:  # pragma: no cover - depends on the host
    _isal_gzip = None
    _IsalError = None

try:
    import zstandard as _zstd
except ImportError:  # pragma: no cover - depends on the host
    _zstd = None

NONE, GZIP, ZSTD, XZ, BZIP2 = "none", "gzip", "zstd", "xz", "bzip2"
_MAGIC = (
    (b"\x1f\x8b", GZIP),
    (b"\x28\xb5\x2f\xfd", ZSTD),
    (b"\xfd7zXZ\x00", XZ),
    (b"BZh", BZIP2),
)
SUFFIXES = {NONE: "", GZIP: ".gz", ZSTD: ".zst", XZ: ".xz", BZIP2: ".bz2"}
DEFAULT_LEVELS = {GZIP: 1, ZSTD: 3}
_READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)
# Decompression bombs: deflate cannot expand more than 1032:1, and only runs of zeros come near that; past
# EXPANSION_FLOOR of output, a stream that has expanded more than MAX_EXPANSION:1 is refused (any format).
MAX_EXPANSION = 1000
EXPANSION_FLOOR = 256 * 1024 * 1024


def detect(head):
    """The compression of a stream that starts with ``head`` (at least 6 bytes when available)."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return NONE


def detect_file(path):
    with open(path, "rb") as handle:
        return detect(handle.read(6))


def zstd_available():
    return _zstd is not None


def _require_zstd(what):
    if _zstd is None:
        raise CompressionError("%s is zstd-compressed, but the Python package 'zstandard' is not installed on this host; "
                               "install it (pip install zstandard) or use gzip or no compression" % what)


class DecompressingReader(ReadStream):
    """A read-only stream of decompressed bytes that turns decompressor errors into CompressionError."""

    def __init__(self, raw, kind, what):
        super().__init__()
        self._what = what
        self._kind = kind
        self._raw = _CountingReader(raw)
        self._stream = _open_decompressor(self._raw, kind, what)
        self._produced = 0
        self._failure = None  # once corrupt, always corrupt: a decompressor may give b"" after its first error

    def read(self, size=-1):
        if self._failure is None:
            try:
                return self._checked_read(size)
            except CompressionError as err:
                self._failure = err
        raise CompressionError(str(self._failure))

    def _checked_read(self, size):
        try:
            data = self._stream.read(size)
        except _READ_ERRORS as err:
            raise CompressionError("%s: corrupt or truncated %s data: %s" % (self._what, self._kind, err)) from None
        except Exception as err:  # neither zstandard.ZstdError nor isal's IsalError is an OSError
            if (_zstd is not None and isinstance(err, _zstd.ZstdError)) or (_IsalError is not None and isinstance(err, _IsalError)):
                raise CompressionError("%s: corrupt or truncated %s data: %s" % (self._what, self._kind, err)) from None
            raise
        self._produced += len(data)
        if self._produced > EXPANSION_FLOOR and self._produced > MAX_EXPANSION * self._raw.count:
            raise CompressionError("%s: %s data expands more than %d:1 (%d bytes from %d); refusing a likely decompression bomb"
                                   % (self._what, self._kind, MAX_EXPANSION, self._produced, self._raw.count))
        return data

    def close(self):
        if not self.closed:
            self._stream.close()
            self._raw.close()
        super().close()


class _CountingReader(ReadStream):
    """Counts the compressed bytes a decompressor takes from ``raw``."""

    def __init__(self, raw):
        super().__init__()
        self._raw = raw
        self.count = 0

    def read(self, size=-1):
        data = self._raw.read(size)
        self.count += len(data)
        return data

    def close(self):
        if not self.closed:
            self._raw.close()
        super().close()


class _ZstdStrictReader:
    """Decompresses concatenated zstd frames; unlike zstandard's stream reader, a truncated frame raises."""

    def __init__(self, raw):
        self._raw = raw
        self._decompressor = _zstd.ZstdDecompressor().decompressobj()
        self._in_frame = False
        self._pending = bytearray()
        self._eof = False

    def read(self, size=-1):
        while not self._eof and (size < 0 or len(self._pending) < size):
            chunk = self._raw.read(1024 * 1024)
            if not chunk:
                self._eof = True
                if self._in_frame:
                    raise EOFError("zstd stream ended inside a frame")
                break
            self._feed(chunk)
        if size < 0 or size >= len(self._pending):
            data = bytes(self._pending)
            self._pending.clear()
        else:
            data = bytes(self._pending[:size])
            del self._pending[:size]
        return data

    def _feed(self, chunk):
        while chunk:
            self._pending += self._decompressor.decompress(chunk)
            self._in_frame = not self._decompressor.eof
            chunk = b""
            if self._decompressor.eof:
                chunk = self._decompressor.unused_data
                self._decompressor = _zstd.ZstdDecompressor().decompressobj()

    def close(self):
        pass


def _open_decompressor(raw, kind, what):
    if kind == GZIP:
        if _isal_gzip is not None:
            return _isal_gzip.IGzipFile(fileobj=raw, mode="rb")
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == ZSTD:
        _require_zstd(what)
        return _ZstdStrictReader(raw)
    if kind == XZ:
        return lzma.LZMAFile(raw, mode="rb")
    if kind == BZIP2:
        return bz2.BZ2File(raw, mode="rb")
    raise CompressionError("%s: unsupported compression %r" % (what, kind))


class _PeekedReader(ReadStream):
    """Gives back bytes already read for sniffing, then the rest of the stream."""

    def __init__(self, head, stream):
        super().__init__()
        self._head = head
        self._stream = stream

    def read(self, size=-1):
        if self._head:
            if size < 0:
                data, self._head = self._head + self._stream.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._stream.read(size)

    def close(self):
        if not self.closed:
            self._stream.close()
        super().close()


def open_maybe_compressed(raw, what):
    """Wrap ``raw`` so that reading gives the decompressed bytes, whatever the magic says.

    Returns ``(stream, kind)``; ``raw`` is owned by the returned stream.
    """
    head = raw.read(6)
    kind = detect(head)
    peeked = _PeekedReader(head, raw)
    if kind == NONE:
        return peeked, kind
    return DecompressingReader(peeked, kind, what), kind


class ForwardSeekable(ReadStream):
    """A seekable view of a stream that can only be read forward.

    Forward seeks read and discard; a backward seek within the last REWIND
    bytes read is served from memory (tarfile steps back one block at the end of
    an archive), any other backward seek reopens the stream through ``reopen``.
    Archive readers get one interface whether the archive on disk is plain
    (real seeks) or compressed.
    """

    REWIND = 64 * 1024

    def __init__(self, reopen):
        super().__init__()
        self._reopen = reopen
        self._stream = reopen()
        self._position = 0
        self._recent = b""  # the last bytes taken from the stream, ending where the stream is
        self._replay = b""  # bytes of _recent to give again after a short backward seek

    def seekable(self):
        return True

    def tell(self):
        return self._position

    def read(self, size=-1):
        if self._replay:
            take = len(self._replay) if size is None or size < 0 else size
            data, self._replay = self._replay[:take], self._replay[take:]
        else:
            data = self._stream.read(size)
            self._recent = data[-self.REWIND:] if len(data) >= self.REWIND else (self._recent + data)[-self.REWIND:]
        self._position += len(data)
        return data

    def seek(self, offset, whence=io.SEEK_SET):
        if whence == io.SEEK_CUR:
            offset += self._position
        elif whence != io.SEEK_SET:
            raise CompressionError("a compressed archive cannot seek from its end")
        if offset < self._position:
            self._rewind(offset)
        while self._position < offset:
            chunk = self.read(min(offset - self._position, 1024 * 1024))
            if not chunk:
                break
        return self._position

    def _rewind(self, offset):
        back = self._position + len(self._replay) - offset  # how far behind the stream's real position
        if back <= len(self._recent):
            self._replay = self._recent[len(self._recent) - back:]
            self._position = offset
            return
        self._stream.close()
        self._stream = self._reopen()
        self._position = 0
        self._recent = self._replay = b""

    def close(self):
        if not self.closed:
            self._stream.close()
        super().close()


def compressor_name(kind):
    """Which library writes ``kind`` on this host; recorded so byte-identity claims can be checked."""
    if kind == GZIP:
        return "isal" if _isal_gzip is not None else "zlib"
    if kind == ZSTD:
        return "zstandard-%s" % _zstd.__version__ if _zstd is not None else "missing"
    return "none"


def open_compressing_writer(sink, kind, level=None):
    """A binary writer that compresses into ``sink`` deterministically (no names, mtime 0).

    ``level`` is the usual 1-9 (gzip) or 1-22 (zstd) scale; isal's 0-3 levels
    are mapped from it. Closing the writer does not close ``sink``.
    """
    if kind == NONE:
        return _Unclosing(sink)
    if level is None:
        level = DEFAULT_LEVELS[kind]
    if kind == GZIP:
        if _isal_gzip is not None:
            return _isal_gzip.IGzipFile(fileobj=sink, mode="wb", compresslevel=min(3, (level + 2) // 3), mtime=0)
        return gzip.GzipFile(filename="", fileobj=sink, mode="wb", compresslevel=level, mtime=0)
    if kind == ZSTD:
        _require_zstd("the output")
        # single-threaded: zstd's worker threads buffer whole jobs (measured: 240 MB RSS with two, 25 MB without);
        # callers that write several archives use the cores by writing two at once
        params = _zstd.ZstdCompressionParameters.from_level(level, threads=0, write_checksum=True, write_content_size=False)
        compressor = _zstd.ZstdCompressor(compression_params=params)
        return compressor.stream_writer(sink, closefd=False)
    raise CompressionError("cannot write %r compression; use none, gzip or zstd" % kind)


class _Unclosing(io.RawIOBase):
    def __init__(self, sink):
        super().__init__()
        self._sink = sink

    def writable(self):
        return True

    def write(self, data):
        return self._sink.write(data)

    def flush(self):
        self._sink.flush()
