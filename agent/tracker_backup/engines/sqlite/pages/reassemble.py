"""Reassembling a snapshot into a plain SQLite file, and checking its objects.

Each referenced object is decompressed once (at most 1 MiB) and its slots are
written where the index puts them, so memory stays bounded and no object is
read twice, whatever order the pages are in.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from tracker_backup.engines.sqlite.pages.index import PageIndex
from tracker_backup.engines.sqlite.pages.objects import (
    DIGEST_BYTES,
    ObjectError,
    ObjectStore,
    page_digest,
)


class ReassembleError(Exception):
    """The snapshot cannot be reassembled: names every object that failed."""


def reassemble(store: ObjectStore, index: PageIndex, out_fd: int, *,
               on_object: Callable[[int, int], None] | None = None,
               checked: dict[str, str | None] | None = None) -> None:
    """Write the database of `index` into `out_fd` (from offset 0); check everything.

    Every object is checked against its name; the page digests of the
    result are checked against the index's pages_digest. `checked` caches
    per-object results (name → problem or None) across snapshots.
    """
    ps = index.page_size
    os.ftruncate(out_fd, index.page_count * ps)
    digests = bytearray(index.page_count * DIGEST_BYTES)
    firsts, order, starts = index.runs_by_object()
    r = index.runs
    problems = []
    used = [k for k in range(len(index.objects)) if starts[k] != starts[k + 1]]
    for done, k in enumerate(used, 1):
        name = index.objects[k].hex()
        try:
            if checked is not None and checked.get(name):
                raise ObjectError(checked[name])
            header, pages = store.read_pages(name)
            if header.page_size != ps:
                raise ObjectError(f"object {name} holds {header.page_size}-byte pages")
            if checked is not None:
                checked[name] = None
        except ObjectError as exc:
            if checked is not None:
                checked[name] = str(exc)
            problems.append(str(exc))
            continue
        view = memoryview(pages)
        for j in range(starts[k], starts[k + 1]):
            run = order[j]
            length, slot = r[3 * run], r[3 * run + 2]
            if slot + length > header.count:
                problems.append(f"object {name}: index names slot {slot + length - 1}, it holds "
                                f"{header.count}")
                break
            part = view[slot * ps:(slot + length) * ps]
            off = (firsts[run] - 1) * ps
            written = 0
            while written < len(part):
                written += os.pwrite(out_fd, part[written:], off + written)
            for i in range(length):
                at = (firsts[run] - 1 + i) * DIGEST_BYTES
                digests[at:at + DIGEST_BYTES] = page_digest(part[i * ps:(i + 1) * ps])
        if on_object is not None:
            on_object(done, len(used))
    if problems:
        raise ReassembleError("; ".join(problems[:5]) + (
            f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
    if index.pages_digest and hashlib.sha256(digests).hexdigest() != index.pages_digest:
        raise ReassembleError("the reassembled pages do not match the index's pages_digest")


def reassemble_to(store: ObjectStore, index: PageIndex, target: Path, **kwargs) -> None:
    """Reassemble into a new file `target` (0600), fsynced; removed again on failure."""
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        reassemble(store, index, fd, **kwargs)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        target.unlink(missing_ok=True)
        raise
    os.close(fd)


def check_objects(store: ObjectStore, index: PageIndex,
                  checked: dict[str, str | None] | None = None) -> list[str]:
    """Problems of every object the index uses (each decompressed and hashed once)."""
    checked = {} if checked is None else checked
    problems = []
    for name in sorted(index.object_names()):
        if name not in checked:
            try:
                store.read_pages(name, check_digests=True)
                checked[name] = None
            except ObjectError as exc:
                checked[name] = str(exc)
        if checked[name]:
            problems.append(checked[name])
    return problems
