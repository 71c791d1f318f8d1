"""The booted guest, as the e2e modules read and prepare it: unit properties, the journal,
and a tracker database (with a live writer) to back up.

`box` is an nspawn.Container; the tests tree is bound at /mnt/tests inside it.
"""

from __future__ import annotations

import json

from support.polling import wait_for

DB = "/opt/torrust/storage/tracker/lib/database/tracker.db"
STATS = "/var/lib/tracker-writer/stats.json"


def show(box, unit: str, *props: str) -> dict[str, str]:
    """`systemctl show UNIT -p PROPS` inside the guest, as property -> value."""
    out = box.run(["systemctl", "show", unit, "-p", ",".join(props)]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal_text(box, unit: str) -> str:
    """The unit's journal inside the guest, messages only (`-o cat`)."""
    return box.run(["journalctl", "--no-pager", "-o", "cat", "-u", unit]).stdout


def journal_entries(box, *match: str, unit: str | None = None) -> list[dict]:
    """The guest's journal entries (`-o json`) that match, of `unit` when given."""
    argv = ["journalctl", "--no-pager", "-o", "json", *(["-u", unit] if unit else []), *match]
    return [json.loads(line) for line in box.run(argv).stdout.splitlines() if line.strip()]


def create_tracker_db(box, rows: int, db: str = DB) -> None:
    """A Torrust database of `rows` torrents at `db` inside the guest (tests/support/tracker_db.py)."""
    box.run(["python3", "-c",
             "import sys; sys.path.insert(0, '/mnt/tests');"
             "from pathlib import Path; from support.tracker_db import create_tracker_db;"
             f"create_tracker_db(Path('{db}'), rows={rows})"])


def start_tracker(box, rows: int) -> None:
    """Tracker storage owned by a non-root uid (torrust, 1000) holding a database of `rows`
    torrents, with the test writer running as that uid (unit tracker-writer.service);
    returns once the writer reports its stats."""
    box.sh("id torrust >/dev/null 2>&1 || useradd --system --uid 1000 --user-group "
           "--home-dir /nonexistent torrust; "
           "mkdir -p /opt/torrust/storage/tracker/lib/database /var/lib/tracker-writer")
    create_tracker_db(box, rows)
    box.sh("chown -R torrust:torrust /opt/torrust/storage/tracker /var/lib/tracker-writer; "
           f"chmod 0640 {DB}")
    box.run(["systemd-run", "--unit=tracker-writer", "--uid=torrust", "--gid=torrust",
             "python3", "/mnt/tests/support/tracker_writer.py", DB, "--rate", "100",
             "--stats", STATS, "--existing", str(rows)])
    wait_for(lambda: box.run(["cat", STATS], check=False).returncode == 0, what="writer stats")
