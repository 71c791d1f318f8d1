"""What `status` and `list` say about a source's continuous archive (engine-neutral).

The running archiver rewrites `archive/<source>/status.json` every 5 s
(docs/format.md); its age tells whether it is alive, its `lag_seconds` how far
behind the source it was then.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tracker_backup.archive.store import SourceArchive

LAG_WARN = 10.0      # status warns when the archiver is further behind than this
STALE_AFTER = 30.0   # ... or when its status file is older than this (stopped or hung)


def read_status(backup_path: Path, source: str) -> dict | None:
    path = SourceArchive(backup_path, source).path / "status.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def summary(backup_path: Path, source: str, *, expected: bool, now: float | None = None) -> dict:
    """The archiver's state and warnings; `expected`: the config enables it."""
    now = time.time() if now is None else now
    st = read_status(backup_path, source) or {}
    warnings = []
    updated = st.get("updated")
    age = now - updated if isinstance(updated, int | float) else None
    lag = st.get("lag_seconds") if isinstance(st.get("lag_seconds"), int | float) else None
    if expected:
        if age is None:
            warnings.append(f"{source}: continuous archiving is configured but no archiver has "
                            "reported yet (is tracker-backup-archive.service running?)")
        elif age > STALE_AFTER:
            warnings.append(f"{source}: the archiver last reported {age:.0f} s ago "
                            "(stopped, hung or stalled: journalctl -u tracker-backup-archive)")
        if st.get("stalled"):
            warnings.append(f"{source}: archive stalled: {st['stalled']}")
        if lag is not None and lag > LAG_WARN:
            warnings.append(f"{source}: archive lag {lag:.1f} s exceeds {LAG_WARN:.0f} s")
    return {"configured": expected, "reported_age_seconds": round(age, 1) if age is not None else None,
            "lag_seconds": lag, "generation": st.get("generation"), "last_seq": st.get("last_seq"),
            "max_lock_ms": st.get("max_lock_ms"), "stalled": st.get("stalled"),
            "warnings": warnings}
