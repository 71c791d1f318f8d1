"""End to end: tracker-backup-archive.service under a booted systemd, from the real .deb.

The config says `[sqlite] continuous = yes`; the generator enables the unit; it notifies
READY, follows a writer running as uid 1000, survives `systemctl restart`, and the journal
tells the story. A point-in-time restore from inside the container closes the loop.
"""

from __future__ import annotations

import json
import time

import pytest

from e2e.guest import DB, STATS, journal_entries, journal_text, show, start_tracker
from support.polling import wait_for

pytestmark = pytest.mark.e2e

CONF = "/etc/tracker-backup/tracker-backup.conf"
UNIT = "tracker-backup-archive.service"


def config_text(continuous: str = "yes") -> str:
    return f"""[backup]
path = /srv/backups/tracker

[schedule]
enabled = yes        ; the archive unit follows the same switch as the timers
on_calendar = *-*-* 03:00:00

[sqlite]
database = {DB}
continuous = {continuous}
"""


@pytest.fixture(scope="module")
def tracker(container):
    box = container
    start_tracker(box, rows=20000)
    box.write(CONF, config_text())
    box.run(["systemctl", "daemon-reload"])
    return box


def test_config_enables_the_archive_unit_and_it_notifies_ready(tracker):
    box = tracker
    assert box.run(["test", "-e", f"/run/systemd/generator/multi-user.target.wants/{UNIT}"],
                   check=False).returncode == 0
    box.run(["systemctl", "start", UNIT], timeout=120)  # Type=notify: returns after READY=1
    props = show(box, UNIT, "ActiveState", "SubState", "Type", "WatchdogUSec", "StatusText")
    assert props["ActiveState"] == "active" and props["Type"] == "notify", props
    assert props["WatchdogUSec"] == "30s", props
    wait_for(lambda: "seq" in show(box, UNIT, "StatusText")["StatusText"], what="STATUS=")
    wait_for(lambda: "archive base" in journal_text(box, UNIT), timeout=60, what="the first base")
    text = journal_text(box, UNIT)
    assert "new archive generation" in text and "first start" in text, text


def test_archive_follows_the_writer_and_survives_systemctl_restart(tracker):
    box = tracker
    time.sleep(3)
    before = json.loads(box.run(["tracker-backup", "status", "--json"]).stdout)
    arch = before["archive"]["sqlite"]
    assert arch["newest"] and arch["lag_seconds"] < 10, arch
    box.run(["systemctl", "restart", UNIT], timeout=120)
    assert show(box, UNIT, "ActiveState")["ActiveState"] == "active"
    time.sleep(3)
    text = journal_text(box, UNIT)
    assert "archiving resumed" not in text  # no stall happened
    # Either the WAL still held the last archived commit (same generation) or the journal
    # says why a new generation started: never silence.
    assert "continuing archive generation" in text or text.count("new archive generation") >= 2, text
    stats = json.loads(box.run(["cat", STATS]).stdout)
    assert stats["errors"] == 0, stats
    owners = box.sh(f"stat -c '%u' {DB}*").stdout.split()
    assert set(owners) == {"1000"}, owners


def test_point_in_time_restore_from_the_running_archive(tracker):
    box = tracker
    out = box.run(["tracker-backup", "restore", "--kind", "sqlite", "--at", "latest",
                   "--to", "/root/restored.db"], timeout=300).stdout
    assert "commit" in out, out
    check = box.run(["python3", "-c", "import sqlite3;c=sqlite3.connect('/root/restored.db');"
                     "print(c.execute('pragma integrity_check').fetchone()[0])"]).stdout.strip()
    assert check == "ok"


def test_journal_tells_the_story_with_structured_fields(tracker):
    entries = journal_entries(tracker, unit=UNIT)
    generations = [e for e in entries if e.get("ARCHIVE_GENERATION") and "generation" in e["MESSAGE"]]
    assert generations and generations[0]["ARCHIVE_SOURCE"] == "sqlite"
    assert any("archive base" in e["MESSAGE"] for e in entries)


def test_stop_is_clean_and_disabling_the_config_removes_the_unit_link(tracker):
    box = tracker
    box.run(["systemctl", "stop", UNIT], timeout=120)
    props = show(box, UNIT, "Result", "ExecMainStatus")
    assert props == {"Result": "success", "ExecMainStatus": "0"}, props
    box.write(CONF, config_text(continuous="no"))
    box.run(["systemctl", "daemon-reload"])
    assert box.run(["test", "-e", f"/run/systemd/generator/multi-user.target.wants/{UNIT}"],
                   check=False).returncode != 0
    box.run(["systemctl", "stop", "tracker-writer"], check=False)
