"""Metrics of the continuous archive, with the real `tracker-backup archive` running.

The archiver rewrites the textfile every few seconds and serves /metrics on
[metrics] listen; every other command reads the archiver's status.json, so
the values match `status --json`.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import Cli, write_config
from support.net import free_port
from support.polling import wait_for
from support.prom_text import Exposition
from support.tracker_db import create_tracker_db
from tracker_backup import metrics
from tracker_backup.config import load_config

P = metrics.PREFIX


def archive_config(tmp_path: Path, textfile: Path, *, continuous: str = "yes",
                   listen: str = "") -> Path:
    db = tmp_path / "db" / "tracker.db"
    if not db.exists():
        db.parent.mkdir(exist_ok=True)
        create_tracker_db(db, rows=2000)
    return write_config(tmp_path / "tb-archive.conf", f"""
[backup]
path = {tmp_path / "backups"}
[metrics]
textfile = {textfile}
{listen}
[sqlite]
database = {db}
continuous = {continuous}
""")


def textfile_has_archive(textfile: Path) -> Exposition | None:
    try:
        m = Exposition(textfile.read_text())
    except FileNotFoundError:
        return None
    return m if m.get(P + "archive_updated_timestamp_seconds", source="sqlite") else None


def test_the_archiver_writes_its_health_and_serves_it_on_the_loopback(tmp_path, textfile, promtool,
                                                                     start_writer):
    port = free_port()
    cli = Cli(archive_config(tmp_path, textfile, listen=f"listen = 127.0.0.1:{port}"))
    proc = cli.popen("archive")
    try:
        writer = start_writer(tmp_path / "db" / "tracker.db", rate=100, existing=2000)
        first = wait_for(lambda: textfile_has_archive(textfile), timeout=60,
                         what="archive metrics in the textfile")
        assert first.value(P + "archive_enabled", source="sqlite") == 1
        assert first.value(P + "archive_stalled", source="sqlite") == 0
        assert first.value(P + "archive_lag_seconds", source="sqlite") < 60
        # rewritten every few seconds: the reported time moves on
        wait_for(lambda: (m := textfile_has_archive(textfile)) and m.value(
            P + "archive_updated_timestamp_seconds", source="sqlite") > first.value(
            P + "archive_updated_timestamp_seconds", source="sqlite"), timeout=60, what="a newer report")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body = resp.read().decode()
        check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        served = Exposition(body)
        assert served.value(P + "archive_enabled", source="sqlite") == 1
        assert served.value(P + "restorable_newest_timestamp_seconds") > time.time() - 120
        # the same values as status --json (both read the archiver's status.json), once
        # the writer stopped and its last commits are published (0.5 s cadence)
        writer.stop()
        time.sleep(2)
        report = tmp_path / "backups/archive/sqlite/status.json"
        for _ in range(5):  # both read while the archiver did not rewrite its report
            before = report.read_bytes()
            status = json.loads(cli("status", "--json", check=True).stdout)["archive"]["sqlite"]
            printed = Exposition(cli("metrics", check=True).stdout)
            if report.read_bytes() == before:
                break
        assert printed.value(P + "archive_lag_seconds", source="sqlite") == status["lag_seconds"]
        assert printed.value(P + "restorable_newest_timestamp_seconds") == status["newest"]
        assert printed.value(P + "restorable_oldest_timestamp_seconds") == status["oldest"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    with pytest.raises(ConnectionRefusedError):  # the endpoint went with the archiver
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_stopped_archiver_keeps_aging_and_a_switched_off_one_disappears(tmp_path, textfile):
    conf = archive_config(tmp_path, textfile)
    cli = Cli(conf)
    proc = cli.popen("archive")
    try:
        wait_for(lambda: textfile_has_archive(textfile), timeout=60,
                 what="archive metrics in the textfile")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    last = textfile_has_archive(textfile).value(P + "archive_updated_timestamp_seconds", source="sqlite")
    cli("run", check=True)  # a timer run rewrites the textfile: the archiver's last report stays
    after_run = Exposition(textfile.read_text())
    assert after_run.value(P + "archive_updated_timestamp_seconds", source="sqlite") == last
    assert after_run.value(P + "last_run_success") == 1
    archive_config(tmp_path, textfile, continuous="no")
    cli("run", check=True)
    off = Exposition(textfile.read_text())
    assert not [n for n in off.names() if n.startswith(P + "archive")], off.names()


def test_configured_but_never_reported_shows_enabled_without_a_report(tmp_path, textfile):
    cli = Cli(archive_config(tmp_path, textfile))
    m = Exposition(cli("metrics", check=True).stdout)
    assert m.value(P + "archive_enabled", source="sqlite") == 1
    assert m.get(P + "archive_updated_timestamp_seconds", source="sqlite") is None


def test_a_store_that_does_not_exist_yet_reports_no_success_rather_than_failing(metrics_config):
    m = Exposition(metrics.render_text(load_config(metrics_config)))
    assert m.value(P + "last_success_timestamp_seconds") == 0
    assert m.value(P + "snapshots", state="good") == 0
    assert m.get(P + "last_run_success") is None and m.get(P + "backup_path_free_bytes") is None
