"""Side files (-wal, -shm, -journal) the agent causes beside a live database keep its owner.

SQLite gives them the database's owner itself when running as root;
`match_side_files` checks, and repairs if SQLite did not.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tracker_backup.engines.sqlite.header import SIDE_SUFFIXES

log = logging.getLogger(__name__)


def match_side_files(db: Path) -> list[str]:
    """Give -wal/-shm/-journal the database file's owner and mode; return what changed."""
    fixed = []
    try:
        st = os.stat(db)
    except OSError:
        return fixed
    for suffix in SIDE_SUFFIXES:
        side = Path(f"{db}{suffix}")
        try:
            sst = os.lstat(side)
        except FileNotFoundError:
            continue
        if (sst.st_uid, sst.st_gid) != (st.st_uid, st.st_gid) and os.geteuid() == 0:
            os.chown(side, st.st_uid, st.st_gid, follow_symlinks=False)
            fixed.append(f"{side.name} owner")
        if (sst.st_mode & 0o777) != (st.st_mode & 0o777):
            try:
                os.chmod(side, st.st_mode & 0o777)
                fixed.append(f"{side.name} mode")
            except PermissionError:
                log.warning("sqlite: cannot give %s the database's mode", side)
    return fixed
