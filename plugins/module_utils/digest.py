# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Digests, ChainIDs and streams that hash what flows through them."""

import collections
import fcntl
import hashlib
import io
import os
import queue
import re
import threading

from .atomic import start_writeback
from .errors import ArchiveError, DigestMismatchError

CHUNK_SIZE = 1024 * 1024
ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^(sha256|sha512):([0-9a-f]+)$")


def sha256_digest(data):
    """``sha256:<hex>`` of a bytes object."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(text):
    match = _DIGEST_RE.match(text or "")
    return bool(match) and len(match.group(2)) == ALGORITHMS[match.group(1)]


def check_digest(text, what):
    """Return ``text`` if it is a well-formed digest, else raise naming ``what``."""
    if not isinstance(text, str) or not is_digest(text):
        raise ArchiveError("%s: %r is not a valid digest (expected sha256:<64 lowercase hex>)" % (what, text))
    return text


def digest_hex(digest):
    return digest.split(":", 1)[1]


def chain_ids(diff_ids):
    """ChainIDs of a layer stack, computed as Docker's ``identity.ChainID`` does."""
    chain = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            chain.append(sha256_digest((chain[-1] + " " + diff_id).encode("ascii")))
    return chain


def new_hasher(digest):
    return hashlib.new(digest.split(":", 1)[0])


class ReadStream(io.RawIOBase):
    """A binary stream defined by its ``read`` alone."""

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class HashingReader(ReadStream):
    """Reads from ``stream`` while hashing and counting every byte."""

    def __init__(self, stream, algorithm="sha256"):
        super().__init__()
        self._stream = stream
        self.hasher = hashlib.new(algorithm)
        self.algorithm = algorithm
        self.count = 0

    def read(self, size=-1):
        data = self._stream.read(size)
        self.hasher.update(data)
        self.count += len(data)
        return data

    @property
    def digest(self):
        return "%s:%s" % (self.algorithm, self.hasher.hexdigest())

    def close(self):
        if not self.closed:
            self._stream.close()
        super().close()


class HashingWriter:
    """Writes to ``sink`` while hashing and counting every byte."""

    def __init__(self, sink, algorithm="sha256"):
        self._sink = sink
        self.hasher = hashlib.new(algorithm)
        self.algorithm = algorithm
        self.count = 0

    def write(self, data):
        self._sink.write(data)
        self.hasher.update(data)
        self.count += len(data)
        return len(data)

    def flush(self):
        self._sink.flush()

    @property
    def digest(self):
        return "%s:%s" % (self.algorithm, self.hasher.hexdigest())


class BackgroundHashingWriter(HashingWriter):
    """A HashingWriter that hashes in a thread of its own while the caller goes on writing (hashlib releases the GIL),
    for large outputs; ``digest`` waits for the hashing to catch up.

    Into a plain file ``sink`` it can read back, ``copy_region`` copies a region of another file in the kernel
    (``copy_file_range``: no pass through this process, a fraction of a user-space copy's time). The copied bytes are
    then read back from ``sink`` twice, in parallel: the hashing thread hashes them into the whole, and a checking
    thread checks them against their own digest. A mismatch is raised by the next write, by ``close`` and by
    ``digest``, so the caller's atomic file is never renamed into place.

    A region is copied in pieces, each read back as soon as it has landed, and the kernel is asked to start writing
    every piece (and every ``PIECE_SIZE`` of plain writes) to disk, so the caller's fsync finds little left to do."""

    PIECE_SIZE = 32 * 1024 * 1024

    def __init__(self, sink, algorithm="sha256"):
        super().__init__(sink, algorithm)
        self._pending = queue.Queue(maxsize=16)
        self._copied = None  # the checking thread's queue, from the first copy_region
        self._failure = None
        self._fileno = _fileno(sink)
        self._written_back = 0  # the sink's offset up to which the kernel was asked to start writing back
        self._threads = [threading.Thread(target=self._hash, daemon=True)]
        self._threads[0].start()

    def _hash(self):
        for item in iter(self._pending.get, None):
            if self._failure is not None:
                continue
            if isinstance(item, Region):
                self._read_back(item, self.hasher)
            else:
                self.hasher.update(item)

    def _check(self):
        """Pieces arrive in order, each with its whole region when it is the region's last."""
        own = None
        for piece, region in iter(self._copied.get, None):
            if self._failure is None:
                own = own or new_hasher(piece.digest)
                if self._read_back(piece, own) and region is not None:
                    self._guard(_check_region, region, own)
            if region is not None:
                own = None

    def _read_back(self, region, hasher):
        """Feed the ``region`` of the sink to ``hasher``; False (the failure kept) when it cannot be read whole."""
        buffer = bytearray(CHUNK_SIZE)
        position, end = region.offset, region.offset + region.size
        while position < end:
            got = self._guard(os.preadv, self._fileno, [memoryview(buffer)[:min(CHUNK_SIZE, end - position)]], position)
            if not got:
                self._failure = self._failure or ArchiveError("%s: only %d of %d bytes were copied"
                                                              % (region.what, position - region.offset, region.size))
                return False
            hasher.update(memoryview(buffer)[:got])
            position += got
        return True

    def _guard(self, function, *args):
        try:
            return function(*args)
        except Exception as err:  # pylint: disable=broad-except
            self._failure = self._failure or err
            return None

    def _raise_failure(self):
        if self._failure is not None:
            raise self._failure

    def write(self, data):
        self._raise_failure()
        data = bytes(data)
        self._sink.write(data)
        self._pending.put(data)
        self.count += len(data)
        if self._fileno is not None and self.count - self._written_back >= self.PIECE_SIZE:
            self._sink.flush()
            self._write_back(self._sink.tell())
        return len(data)

    def _write_back(self, end):
        if self._fileno is not None:
            start_writeback(self._fileno, self._written_back, end - self._written_back)
            self._written_back = end

    @property
    def copies_regions(self):
        """Whether ``copy_region`` can copy into the sink: a file this process writes and can read back (the copied
        bytes are checked where they landed)."""
        if self._fileno is None or not (hasattr(os, "copy_file_range") and hasattr(os, "preadv")):
            return False
        try:
            return fcntl.fcntl(self._fileno, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
        except OSError:
            return False

    def copy_region(self, source, digest, what):
        """Append the FileRegion ``source`` to the sink, checked against ``digest``."""
        self._raise_failure()
        path, offset, size = source
        self._sink.flush()
        start = self._sink.tell()
        self._write_back(start)
        region = Region(start, size, digest, what)
        if self._copied is None:
            self._copied = queue.Queue()
            self._threads.append(threading.Thread(target=self._check, daemon=True))
            self._threads[-1].start()
        with open(path, "rb") as handle:
            for done in range(0, size, self.PIECE_SIZE) or [0]:
                piece = Region(start + done, min(self.PIECE_SIZE, size - done), digest, what)
                copy_file_region(handle.fileno(), offset + done, self._fileno, piece.offset, piece.size, what)
                self._write_back(piece.offset + piece.size)
                self._copied.put((piece, region if done + piece.size == size else None))
                self._pending.put(piece)
                self._raise_failure()
        self._sink.seek(start + size)
        self.count += size

    def close(self):
        if self._threads[0].is_alive():
            self._pending.put(None)
            if self._copied is not None:
                self._copied.put(None)
            for thread in self._threads:
                thread.join()
        self._raise_failure()

    @property
    def digest(self):
        self.close()
        return "%s:%s" % (self.algorithm, self.hasher.hexdigest())


def _fileno(sink):
    try:
        return sink.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


class VerifyingReader(ReadStream):
    """Hashes a stream and, when it ends, checks its digest (and size, if known).

    ``what`` names the content in the error, e.g. ``layer 2 of busybox:latest``.
    Extra checks (``at_end``) run once at the end of the stream; they let the
    caller verify a second digest, e.g. the compressed blob under a DiffID.
    """

    def __init__(self, stream, expected_digest, what, expected_size=None, at_end=None):
        super().__init__()
        self._reader = HashingReader(stream, expected_digest.split(":", 1)[0])
        self._expected = expected_digest
        self._expected_size = expected_size
        self.what = what
        self._at_end = at_end
        self._done = False

    def read(self, size=-1):
        data = self._reader.read(size)
        if self._expected_size is not None and self._reader.count > self._expected_size:
            self._done = True
            raise DigestMismatchError("%s: size mismatch: more than the %d bytes announced (corrupt or tampered content)"
                                      % (self.what, self._expected_size))
        if (not data and size != 0) or size is None or size < 0:
            self._finish()
        return data

    def readall(self):
        return self.read(-1)

    @property
    def count(self):
        return self._reader.count

    def _finish(self):
        if self._done:
            return
        self._done = True
        if self._expected_size is not None and self._reader.count != self._expected_size:
            raise DigestMismatchError("%s: size mismatch: expected %d bytes, got %d (truncated or corrupt)"
                                      % (self.what, self._expected_size, self._reader.count))
        check_hashed(self.what, self._expected, self._reader.digest)
        if self._at_end is not None:
            self._at_end()

    def close(self):
        if not self.closed:
            self._reader.close()
        super().close()


FileRegion = collections.namedtuple("FileRegion", "path offset size")
FileRegion.__doc__ = "``size`` bytes at ``offset`` of the plain file at ``path``, where a stored blob lies as it is."


class Region:
    """``size`` bytes at ``offset`` of a file that must hash to ``digest`` (``what`` names them in an error)."""

    __slots__ = ("offset", "size", "digest", "what")

    def __init__(self, offset, size, digest, what):
        self.offset, self.size, self.digest, self.what = offset, size, digest, what


def verified_file_chunks(path, size, regions):
    """The first ``size`` bytes of the file at ``path`` as chunks, each of the (disjoint) ``regions`` checked as they
    pass: the chunk that completes a region goes out only when the region's digest is right, so a consumer that
    relays the chunks never sends the whole of a corrupt region. A reader thread reads and hashes ahead (hashlib and
    file reads release the GIL) while the consumer sends."""
    chunks = queue.Queue(maxsize=4)
    stop = threading.Event()

    def offer(item):
        """Queue ``item`` unless the consumer has gone (it stops taking when the engine hangs up)."""
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for chunk in _checked_chunks(path, size, sorted(regions, key=lambda region: region.offset)):
                if not offer(chunk):
                    return
            offer(None)
        except Exception as err:  # pylint: disable=broad-except
            offer(err)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = chunks.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _checked_chunks(path, size, regions):
    for region in regions:
        if region.size == 0:
            _check_region(region, new_hasher(region.digest))
    position, pending = 0, [region for region in regions if region.size]
    hashers = []  # [region, hasher, bytes hashed] of the regions the current chunk touches
    with open(path, "rb") as handle:
        while position < size:
            chunk = handle.read(min(CHUNK_SIZE, size - position))
            if not chunk:
                raise ArchiveError("%s: the file ended at byte %d of %d while it was being sent (truncated meanwhile?)"
                                   % (path, position, size))
            end = position + len(chunk)
            while pending and pending[0].offset < end:
                region = pending.pop(0)
                hashers.append([region, new_hasher(region.digest), 0])
            for entry in hashers:
                region = entry[0]
                start = max(region.offset, position) - position
                stop = min(region.offset + region.size, end) - position
                entry[1].update(memoryview(chunk)[start:stop])
                entry[2] += stop - start
            for entry in [entry for entry in hashers if entry[2] == entry[0].size]:
                _check_region(entry[0], entry[1])
                hashers.remove(entry)
            position = end
            yield chunk
    for region in [entry[0] for entry in hashers] + pending:
        raise ArchiveError("%s: %s lies beyond the %d bytes sent" % (path, region.what, size))


def copy_file_region(source_fd, offset, target_fd, target_offset, size, what):
    """Copy ``size`` bytes at ``offset`` of one file to ``target_offset`` of another: in the kernel where it can
    (``copy_file_range``), else through a buffer; a source that ends early fails naming ``what``."""
    done = 0
    while done < size:
        try:
            got = os.copy_file_range(source_fd, target_fd, size - done, offset + done, target_offset + done)
        except OSError:  # another file system on an old kernel, or one that cannot: copy it here
            got = _copy_through_buffer(source_fd, offset + done, target_fd, target_offset + done, size - done)
        if not got:
            raise ArchiveError("%s: ended after %d of %d bytes" % (what, done, size))
        done += got


def _copy_through_buffer(source_fd, offset, target_fd, target_offset, size):
    data = os.pread(source_fd, min(CHUNK_SIZE, size), offset)
    return os.pwrite(target_fd, data, target_offset) if data else 0


def _check_region(region, hasher):
    check_hashed(region.what, region.digest, "%s:%s" % (region.digest.split(":", 1)[0], hasher.hexdigest()))


def check_hashed(what, expected, actual):
    """Raise DigestMismatchError naming ``what`` unless the digest ``actual`` of its bytes is ``expected``."""
    if actual != expected:
        raise DigestMismatchError("%s: digest mismatch: expected %s, got %s (corrupt or tampered content)"
                                  % (what, expected, actual))


def drain(stream, sink=None):
    """Read ``stream`` to its end (feeding ``sink.write`` if given); return the byte count."""
    total = 0
    while True:
        chunk = stream.read(CHUNK_SIZE)
        if not chunk:
            return total
        total += len(chunk)
        if sink is not None:
            sink.write(chunk)


def file_sha256(path, length=None):
    """The hex sha256 of the file at ``path``, or of its first ``length`` bytes."""
    hasher = hashlib.sha256()
    left = length
    with open(path, "rb") as handle:
        while left is None or left > 0:
            chunk = handle.read(CHUNK_SIZE if left is None else min(CHUNK_SIZE, left))
            if not chunk:
                break
            hasher.update(chunk)
            if left is not None:
                left -= len(chunk)
    return hasher.hexdigest()


HASH_ATTRIBUTE = "user.airgap-images.sha256"


def remembered_file_sha256(path):
    """``file_sha256(path)``, remembered on the file where its filesystem keeps extended attributes: the hash with
    the size and modification time it is of, so a file unchanged since is not read again (a changed one is)."""
    stamp = _stamp(path)
    try:
        digest, seen = os.getxattr(path, HASH_ATTRIBUTE).decode("ascii").split(" ", 1)
        if seen == stamp:
            return digest
    except (OSError, ValueError, AttributeError):  # no attribute, no xattr support, not Linux
        pass
    digest = file_sha256(path)
    remember_file_sha256(path, digest, stamp)
    return digest


def remember_file_sha256(path, digest, stamp=None):
    """Record that ``path`` (as it is now, or as it was at ``stamp``) hashes to ``digest`` (hex); best effort."""
    try:
        os.setxattr(path, HASH_ATTRIBUTE, ("%s %s" % (digest, stamp or _stamp(path))).encode("ascii"))
    except (OSError, AttributeError):
        pass


def _stamp(path):
    status = os.stat(path)
    return "%d %d" % (status.st_size, status.st_mtime_ns)
