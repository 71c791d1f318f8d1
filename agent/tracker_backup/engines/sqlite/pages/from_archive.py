"""The next page snapshot built from the continuous archive, without reading the live database.

Where `[sqlite] continuous = yes` and the archiver is running, the WAL commits
since the previous page snapshot are already in the archive: the previous
snapshot's recorded WAL position names the archive entry it equals
(archive/position.py `resolve`), and the latest version of every page changed
by the entries after it, up to the last shipped one, is all the new snapshot
needs (archive/restore.py `changed_pages`). Work and new bytes are those of
the changes, whatever the database's size. The snapshot's consistent point is
the last shipped commit; it is recorded as its own archive_position.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from tracker_backup.archive.store import SourceArchive
from tracker_backup.engines.sqlite.archive.position import resolve
from tracker_backup.engines.sqlite.archive.restore import changed_pages
from tracker_backup.engines.sqlite.pages.index import PageIndex
from tracker_backup.engines.sqlite.pages.objects import ObjectStore
from tracker_backup.engines.sqlite.pages.writer import WriteResult, write_snapshot

log = logging.getLogger(__name__)
SOURCE = "sqlite"


def archiver_running(backup_path: Path) -> bool:
    """True while an archiver holds the source's lock (it ships commits within a second)."""
    lock = SourceArchive(backup_path, SOURCE).path / ".lock"
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def from_archive(backup_path: Path, store: ObjectStore, previous_source: dict,
                 previous: PageIndex, *, level: int = 3) -> tuple[WriteResult, dict] | None:
    """(the new snapshot, facts for its manifest), or None when the archive cannot say
    (no archiver running, another database file, the previous position not archived)."""
    pos = previous_source.get("archive_position")
    if not isinstance(pos, dict) or not archiver_running(backup_path):
        return None
    found = resolve(backup_path, pos, SOURCE)
    if found is None:
        return None
    gen_id, base_seq = found
    gen = next((g for g in SourceArchive(backup_path, SOURCE).generations() if g.id == gen_id),
               None)
    if gen is None or (gen.info.get("identity") or {}).get("page_size") != previous.page_size:
        return None
    segs, _problem = gen.segments()
    if not segs or segs[-1].last_seq < base_seq:
        return None
    end = segs[-1]
    if end.last_seq == base_seq:  # nothing committed since: the same point again
        position = dict(pos)
    else:
        last = end.trailer.get("last_meta") or {}
        try:
            position = {"salt1": int(last["salt1"]), "salt2": int(last["salt2"]),
                        "frame": int(last["frame"]),
                        "time": float(end.trailer.get("last_time") or last.get("t") or 0.0),
                        "dev": pos["dev"], "ino": pos["ino"]}
        except (KeyError, TypeError, ValueError):
            return None
    if end.last_seq == base_seq:
        page_count, pages = previous.page_count, iter(())
    else:
        page_count, pages = changed_pages(gen, base_seq, end.last_seq, previous.page_size)
    result = write_snapshot(store, pages, previous, page_count, page_size=previous.page_size,
                            level=level)
    return result, {"archive_position": position, "archive_generation": gen.id,
                    "archive_entries": end.last_seq - base_seq, "archive_seq": end.last_seq}
