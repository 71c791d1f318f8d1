"""Objects of the page store: immutable, content-addressed groups of pages.

An object file is a zstd skippable frame (tag, page size, page count, one
16-byte digest per page) followed by one zstd frame holding the pages. Its
name is the SHA-256 of the decompressed pages, so the name checks the object.
The per-page digests let the next run detect changed pages without
decompressing anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SKIPPABLE_MAGIC = 0x184D2A5B
TAG = b"TBPAGES1"
DIGEST_BYTES = 16
GROUP_BYTES = 1 << 20  # at most 1 MiB of pages per object
FILE_MODE = 0o600
DIR_MODE = 0o700
_HEAD = struct.Struct("<II")  # skippable frame: magic, payload length
_META = struct.Struct("<II")  # page size, page count


class ObjectError(Exception):
    """An object is missing, unreadable or does not match its name."""


def page_digest(page: bytes | memoryview) -> bytes:
    """The 16-byte digest of one page recorded in object headers."""
    return hashlib.sha256(page).digest()[:DIGEST_BYTES]


def pages_per_object(page_size: int) -> int:
    """How many pages one object holds at most."""
    return max(1, GROUP_BYTES // page_size)


def encode_object(pages: bytes, page_size: int, digests: bytes, compressor) -> bytes:
    """The stored bytes of an object holding `pages` (digests: 16 bytes per page)."""
    n = len(pages) // page_size
    payload = TAG + _META.pack(page_size, n) + digests
    return _HEAD.pack(SKIPPABLE_MAGIC, len(payload)) + payload + compressor.compress(pages)


def new_compressor(level: int = 3):
    """A zstd compressor that writes checksummed frames with their content size."""
    import zstandard

    return zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)


@dataclass(frozen=True)
class ObjectHeader:
    """What an object's skippable frame says."""

    page_size: int
    count: int
    digests: bytes  # count × 16 bytes
    body_offset: int  # where the zstd frame of the pages starts


def parse_header(head: bytes, name: str) -> ObjectHeader:
    """Decode the skippable frame at the start of an object's bytes."""
    if len(head) < _HEAD.size:
        raise ObjectError(f"object {name}: truncated header")
    magic, length = _HEAD.unpack_from(head)
    if magic != SKIPPABLE_MAGIC or len(head) < _HEAD.size + length or length < 16:
        raise ObjectError(f"object {name}: bad or truncated header")
    payload = head[_HEAD.size:_HEAD.size + length]
    if payload[:8] != TAG:
        raise ObjectError(f"object {name}: unknown header tag")
    page_size, count = _META.unpack_from(payload, 8)
    digests = bytes(payload[16:])
    if len(digests) != count * DIGEST_BYTES or count == 0:
        raise ObjectError(f"object {name}: header holds {len(digests)} digest bytes for "
                          f"{count} pages")
    return ObjectHeader(page_size, count, digests, _HEAD.size + length)


class ObjectStore:
    """The `pages/objects` directory of a backup path."""

    def __init__(self, root: Path):
        self.root = Path(root)  # <backup path>/pages
        self.objects = self.root / "objects"
        self._dirty: set[Path] = set()

    def path(self, name: str) -> Path:
        return self.objects / name[:2] / name

    def has(self, name: str) -> bool:
        return self.path(name).is_file()

    def size(self, name: str) -> int:
        try:
            return self.path(name).stat().st_size
        except FileNotFoundError:
            return 0

    def put(self, name: str, data: bytes) -> bool:
        """Store an object under its name unless it exists; True if written now.

        The bytes are fsynced under a temporary name and renamed; the directory
        is fsynced by `sync()`, which must run before an index naming it is published.
        """
        final = self.path(name)
        if final.is_file():
            return False
        for d in (self.root, self.objects, final.parent):
            if not d.is_dir():
                d.mkdir(mode=DIR_MODE, exist_ok=True)
                self._dirty.add(d.parent)
        tmp = final.with_name(f".tmp-{name}-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        os.rename(tmp, final)
        self._dirty.add(final.parent)
        return True

    def sync(self) -> None:
        """fsync every directory an object was created in since the last sync.

        Concurrently (the journal commits them together), deepest directories first.
        """
        from concurrent.futures import ThreadPoolExecutor

        by_depth: dict[int, list[Path]] = {}
        for d in self._dirty:
            by_depth.setdefault(len(d.parts), []).append(d)
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="pages-dirsync") as pool:
            for depth in sorted(by_depth, reverse=True):
                list(pool.map(_fsync_dir, by_depth[depth]))
        self._dirty.clear()

    def read_header(self, name: str) -> ObjectHeader:
        """The object's page size, page count and page digests (reads only the header)."""
        try:
            with open(self.path(name), "rb") as fh:
                head = fh.read(4096)
                if len(head) >= _HEAD.size:
                    need = _HEAD.size + _HEAD.unpack_from(head)[1]
                    if need > len(head):
                        head += fh.read(need - len(head))
        except FileNotFoundError:
            raise ObjectError(f"object {name} is missing") from None
        except OSError as exc:
            raise ObjectError(f"object {name}: cannot read: {exc.strerror}") from None
        return parse_header(head, name)

    def read_pages(self, name: str, *, check_name: bool = True,
                   check_digests: bool = False) -> tuple[ObjectHeader, bytes]:
        """(header, decompressed pages), checked against the object's name (SHA-256)
        unless `check_name` is false (zstd's own checksum is checked always)."""
        import zstandard

        try:
            data = self.path(name).read_bytes()
        except FileNotFoundError:
            raise ObjectError(f"object {name} is missing") from None
        except OSError as exc:
            raise ObjectError(f"object {name}: cannot read: {exc.strerror}") from None
        header = parse_header(data, name)
        expected = header.count * header.page_size
        try:
            pages = zstandard.ZstdDecompressor().decompress(
                data[header.body_offset:], max_output_size=expected)
        except zstandard.ZstdError as exc:
            raise ObjectError(f"object {name}: damaged compressed data ({exc})") from None
        if len(pages) != expected:
            raise ObjectError(f"object {name}: holds {len(pages)} bytes, header says {expected}")
        if check_name and hashlib.sha256(pages).hexdigest() != name:
            raise ObjectError(f"object {name}: content does not match its name (SHA-256)")
        if check_digests:
            ps = header.page_size
            view = memoryview(pages)
            for i in range(header.count):
                if page_digest(view[i * ps:(i + 1) * ps]) != header.digests[i * 16:(i + 1) * 16]:
                    raise ObjectError(f"object {name}: page digest {i} in the header is wrong")
        return header, pages

    def names(self) -> Iterator[str]:
        """Names of all stored objects (not temporary files)."""
        if not self.objects.is_dir():
            return
        for sub in self.objects.iterdir():
            if sub.is_dir() and len(sub.name) == 2:
                for entry in sub.iterdir():
                    if not entry.name.startswith("."):
                        yield entry.name

    def temporaries(self) -> Iterator[Path]:
        """Objects being written (or left by a killed writer)."""
        if not self.objects.is_dir():
            return
        for sub in self.objects.iterdir():
            if sub.is_dir():
                yield from sub.glob(".tmp-*")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
