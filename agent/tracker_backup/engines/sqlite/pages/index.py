"""A snapshot's page index: which object slot holds each page of the database.

Decompressed, an index is one JSON line, the table of referenced objects
(32-byte SHA-256 each) and runs of three little-endian u32 (length, object
number, first slot) covering pages 1..page_count in order. docs/format.md
("Page index") is the specification.
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

FORMAT = "tracker-backup-pages"
VERSION = 1


class PageIndexError(Exception):
    """A page index cannot be read or does not describe a whole database."""


def _u32() -> array:
    a = array("I")
    assert a.itemsize == 4
    return a


@dataclass
class PageIndex:
    """The decoded page index of one snapshot."""

    page_size: int
    page_count: int
    objects: list[bytes] = field(default_factory=list)  # 32-byte SHA-256 per object number
    runs: array = field(default_factory=_u32)  # flat (length, object, slot) triples
    pages_digest: str = ""

    @property
    def run_count(self) -> int:
        return len(self.runs) // 3

    def object_names(self) -> set[str]:
        """Hex names of every object a run uses."""
        used = {self.runs[i + 1] for i in range(0, len(self.runs), 3)}
        return {self.objects[n].hex() for n in used}

    def iter_runs(self) -> Iterator[tuple[int, int, int, int]]:
        """(first page, length, object number, first slot) for every run, in page order."""
        page = 1
        r = self.runs
        for i in range(0, len(r), 3):
            yield page, r[i], r[i + 1], r[i + 2]
            page += r[i]

    def runs_by_object(self) -> tuple[array, array, array]:
        """(first page of each run, run numbers sorted by object, start of each object's
        slice in that order): a counting sort in compact arrays, so grouping millions
        of runs by object costs a few bytes per run."""
        r = self.runs
        n_runs, n_obj = len(r) // 3, len(self.objects)
        firsts = _u32()
        counts = array("I", bytes(4 * (n_obj + 1)))
        page = 1
        for i in range(n_runs):
            firsts.append(page)
            page += r[3 * i]
            counts[r[3 * i + 1] + 1] += 1
        for k in range(n_obj):
            counts[k + 1] += counts[k]
        starts = array("I", counts)
        order = array("I", bytes(4 * n_runs))
        fill = array("I", counts)
        for i in range(n_runs):
            k = r[3 * i + 1]
            order[fill[k]] = i
            fill[k] += 1
        return firsts, order, starts

    def encode(self) -> bytes:
        """The decompressed bytes of the index file."""
        head = {"format": FORMAT, "version": VERSION, "page_size": self.page_size,
                "page_count": self.page_count, "objects": len(self.objects),
                "runs": self.run_count, "pages_digest": self.pages_digest}
        runs = self.runs
        if sys.byteorder != "little":
            runs = array("I", runs)
            runs.byteswap()
        return (json.dumps(head, sort_keys=True).encode() + b"\n" + b"".join(self.objects)
                + runs.tobytes())

    @classmethod
    def decode(cls, data: bytes, what: str = "page index") -> PageIndex:
        """Parse and check the decompressed bytes of an index file."""
        nl = data.find(b"\n")
        try:
            head = json.loads(data[:nl]) if nl > 0 else None
        except ValueError:
            head = None
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            raise PageIndexError(f"{what}: not a tracker-backup page index")
        if head.get("version") != VERSION:
            raise PageIndexError(f"{what}: unknown page index version {head.get('version')!r}")
        try:
            ps, count = int(head["page_size"]), int(head["page_count"])
            n_obj, n_runs = int(head["objects"]), int(head["runs"])
        except (KeyError, TypeError, ValueError):
            raise PageIndexError(f"{what}: header lacks page_size/page_count/objects/runs") from None
        body = memoryview(data)[nl + 1:]
        if len(body) != 32 * n_obj + 12 * n_runs:
            raise PageIndexError(f"{what}: {len(body)} bytes after the header, expected "
                              f"{32 * n_obj + 12 * n_runs}")
        objects = [bytes(body[32 * k:32 * k + 32]) for k in range(n_obj)]
        runs = _u32()
        runs.frombytes(body[32 * n_obj:])
        if sys.byteorder != "little":
            runs.byteswap()
        index = cls(ps, count, objects, runs, str(head.get("pages_digest", "")))
        index.check(what)
        return index

    def check(self, what: str = "page index") -> None:
        """Runs must cover exactly pages 1..page_count and name existing objects."""
        total = 0
        r = self.runs
        n_obj = len(self.objects)
        for i in range(0, len(r), 3):
            if r[i] == 0 or r[i + 1] >= n_obj:
                raise PageIndexError(f"{what}: run {i // 3} is empty or names object {r[i + 1]} "
                                  f"of {n_obj}")
            total += r[i]
        if total != self.page_count:
            raise PageIndexError(f"{what}: runs cover {total} pages, the database has "
                              f"{self.page_count}")


def read_index_file(path, what: str | None = None) -> PageIndex:
    """Read and decode a stored (zstd-compressed) index file."""
    import zstandard

    what = what or str(path)
    try:
        with open(path, "rb") as fh:
            data = zstandard.ZstdDecompressor().stream_reader(fh).read()
    except FileNotFoundError:
        raise PageIndexError(f"{what}: missing") from None
    except (OSError, zstandard.ZstdError) as exc:
        raise PageIndexError(f"{what}: unreadable ({exc})") from None
    return PageIndex.decode(data, what)


def compress_index(index: PageIndex, level: int = 3) -> bytes:
    """The stored bytes of an index file: one checksummed zstd frame."""
    import zstandard

    return zstandard.ZstdCompressor(level=level, write_checksum=True,
                                    write_content_size=True).compress(index.encode())
