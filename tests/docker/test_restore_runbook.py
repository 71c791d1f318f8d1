"""Every command block of docs/restore.md runs here, against a real snapshot and a real Docker engine.

The runbook's paths (/opt/torrust, /var/backups/tracker-backup, /etc/tracker-backup,
/var/tmp/tracker-restore) are pointed at a test directory. Real: a compose deployment in
the deployer's layout on a private dockerd (tests/support/deployment.py: the `mysql`
service with MYSQL_ROOT_PASSWORD from .env, the `tracker` service writing the SQLite
database as uid 1000), the snapshot the agent took from it through
`exec_prefix = docker compose ... exec -T mysql`, `docker compose stop/start/up/down`,
zstd, sqlite3, tar, sha256sum, the agent. Section 6 ("new host") runs against a second,
empty deployment after the first one is taken down.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import AGENT
from support.deployment import (
    BACKUP_USER,
    DATABASE,
    ROOT_PASSWORD,
    TRACKER_UID,
    Deployment,
)
from support.restore_kit import leave_stale_wal

pytestmark = [pytest.mark.docker, pytest.mark.mysql]

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "restore.md"
TOML = '[core.database]\ndriver = "sqlite3"\n# restored\n'
PREAMBLE = "1. Find the snapshot and check it"


def runbook_units() -> dict[str, str]:
    """Heading → the shell text of its ```sh blocks (## or ### headings)."""
    units: dict[str, list[str]] = {}
    heading = None
    in_block = False
    for line in RUNBOOK.read_text().splitlines():
        if in_block:
            if line.startswith("```"):
                in_block = False
            else:
                units.setdefault(heading, []).append(line)
            continue
        if line.startswith("```"):
            assert line == "```sh", f"docs/restore.md: only ```sh blocks, got {line!r}"
            assert heading is not None
            in_block = True
        elif m := re.match(r"^#{2,3} (.+)$", line):
            heading = m.group(1)
    return {h: "\n".join(lines) for h, lines in units.items()}


UNITS = [h for h in runbook_units() if h != PREAMBLE]


def runbook_tar_diff_line() -> str:
    """The runbook's `tar -df` check of the live storage, verbatim (from section 6.1)."""
    lines = [line for line in runbook_units()["6.1 New host, SQLite tracker"].splitlines()
             if "tar -df" in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_the_runbook_has_the_sections_the_tests_expect():
    assert runbook_units()[PREAMBLE]
    assert UNITS == ["2. Restore with the agent", "3. SQLite by hand", "4. Files by hand",
                     "5. MySQL by hand", "6.1 New host, SQLite tracker",
                     "6.2 New host, MySQL tracker"]


class Host:
    """A deployer host in a directory: /opt/torrust on the engine, the agent, a snapshot."""

    def __init__(self, engine, tmp: Path):
        self.engine = engine
        self.tmp = tmp
        self.dep = Deployment(engine, tmp / "host", torrents=2000)
        self.opt = self.dep.opt
        self.storage = self.dep.storage
        self.db = self.dep.db
        self.backups = tmp / "host/var/backups/tracker-backup"
        self.etc = tmp / "host/etc/tracker-backup"
        self.scratch = tmp / "host/var/tmp/tracker-restore"
        self.bin = tmp / "bin"
        (self.storage / "tracker/etc/tracker.toml").write_text(TOML)
        self.etc.mkdir(parents=True)
        self.backups.parent.mkdir(parents=True, exist_ok=True)
        self.password = "agent-" + secrets.token_hex(8)
        for name, value in (("mysql.password", self.password), ("mysql-root.password", ROOT_PASSWORD)):
            (self.etc / name).write_text(value + "\n")
            os.chmod(self.etc / name, 0o600)
        self.dep.up()
        self.dep.setup_accounts(self.password, torrents=1500)
        self.config = self.etc / "tracker-backup.conf"
        self.config.write_text(f"""
[backup]
path = {self.backups}
[sqlite]
database = {self.db}
[mysql]
database = {DATABASE}
user = {BACKUP_USER}
password_file = {self.etc / "mysql.password"}
exec_prefix = docker compose -f {self.opt}/docker-compose.yml exec -T mysql
[files]
root = {self.storage}
include = tracker/etc/** caddy/etc/**
exclude = tracker/log/**
""")
        self.bin.mkdir()
        (self.bin / "tracker-backup").write_text(
            f"#!/bin/sh\nPYTHONPATH={AGENT} exec {sys.executable} -m tracker_backup "
            f"--config {self.config} \"$@\"\n")
        (self.bin / "tracker-backup").chmod(0o755)
        self.env = {**{k: v for k, v in os.environ.items()
                       if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "INVOCATION_ID")},
                    "PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin",
                    "DOCKER_HOST": engine.env["DOCKER_HOST"],
                    "DOCKER_CONFIG": engine.env["DOCKER_CONFIG"]}
        out = self.sh("tracker-backup run --no-prune")
        self.snap = self.backups / out.strip().splitlines()[-1]
        self.manifest = json.loads((self.snap / "MANIFEST.json").read_text())

    def substitute(self, text: str, opt: Path | None = None) -> str:
        for old, new in (("/opt/torrust", str(opt or self.opt)),
                         ("/var/backups/tracker-backup", str(self.backups)),
                         ("/var/tmp/tracker-restore", str(self.scratch)),
                         ("/etc/tracker-backup", str(self.etc))):
            text = text.replace(old, new)
        return text

    def sh(self, script: str) -> str:
        proc = subprocess.run(["sh", "-eu", "-c", script], capture_output=True, text=True,
                              env=self.env, timeout=600, cwd=self.tmp)
        assert proc.returncode == 0, (f"exit {proc.returncode}\n--- script\n{script}\n--- stdout\n"
                                      f"{proc.stdout}\n--- stderr\n{proc.stderr}")
        return proc.stdout


@pytest.fixture
def host(docker_engine):
    tmp = Path(tempfile.mkdtemp(prefix="tbr-", dir="/tmp"))  # short: socket paths inside
    h = Host(docker_engine, tmp)
    try:
        yield h
    finally:
        h.dep.remove()
        shutil.rmtree(tmp, ignore_errors=True)


def check_sqlite(host: Host, db: Path, *, written_since: bool = False) -> None:
    st = os.stat(db)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (TRACKER_UID, TRACKER_UID, 0o640)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                  for t in host.manifest["sources"]["sqlite"]["row_counts"]}
    finally:
        conn.close()
    expected = host.manifest["sources"]["sqlite"]["row_counts"]
    if written_since:  # the tracker runs again and adds torrents
        assert counts["torrents"] >= expected["torrents"]
        assert {k: v for k, v in counts.items() if k != "torrents"} == \
            {k: v for k, v in expected.items() if k != "torrents"}
    else:
        assert counts == expected


def check_mysql(dep: Deployment, manifest: dict) -> None:
    for table, count in manifest["sources"]["mysql"]["row_counts"].items():
        assert int(dep.value(f"SELECT COUNT(*) FROM `{table}`", DATABASE)) == count, table
    total, metric = dep.invariant(DATABASE)
    assert total == metric


def running(dep: Deployment) -> set[str]:
    out = dep.compose("ps", "--status", "running", "--services", check=False).stdout
    return set(out.split())


def new_host(host: Host) -> Deployment:
    """The old host is gone; the deployer provisioned an empty /opt/torrust on a new one."""
    host.dep.compose("down", "-t", "20")
    dep = Deployment(host.engine, host.tmp / "newhost", empty=True)
    return dep


@pytest.mark.parametrize("unit", UNITS)
def test_runbook_section_runs_and_restores(host, unit):
    units = runbook_units()
    dep = host.dep
    if unit.startswith("6."):
        dep = new_host(host)
    else:  # what the restore must undo: edited files, lost MySQL rows; the tracker wrote SQLite
        (host.storage / "tracker/etc/tracker.toml").write_text("broken\n")
        host.dep.sql("DELETE FROM torrents WHERE id % 2 = 0", DATABASE)
    if unit.startswith(("2.", "3.")):  # the tracker died leaving committed frames in its -wal
        host.dep.compose("stop", "tracker")
        leave_stale_wal(host.db, rows=500)
    before = dep.writer().get("started")  # the tracker writer running now, if any
    script = host.substitute(units[PREAMBLE] + "\n" + units[unit], dep.opt)
    out = host.sh(script)
    assert f"{host.snap.relative_to(host.backups)}" in out
    checked = sorted(m.group(1) for m in re.finditer(r"^(\S+\.zst): OK$", out, re.M))
    assert checked == sorted(a["path"] for a in host.manifest["artifacts"])  # sha256sum -c
    storage = dep.storage
    db = storage / "tracker/lib/database/tracker.db"

    if unit.startswith(("2.", "3.", "6.1")):
        # The section started the tracker again, and it writes the restored file as uid 1000.
        dep.wait_writer(before)
        dep.compose("stop", "tracker")
        assert dep.writer()["errors"] == 0, dep.writer()["last_error"]
    if unit.startswith("2."):
        assert (host.scratch / "tracker/etc/tracker.toml").read_text() == TOML
        assert (storage / "tracker/etc/tracker.toml").read_text() == TOML
        check_sqlite(host, db, written_since=True)
        check_mysql(dep, host.manifest)
        assert [n for n in os.listdir(db.parent) if ".before-restore-" in n]
        assert "drill OK" in out and "last drill:   ok" in out
        # 6.3's check, with the runbook's own `tar -df` line: the restored storage files
        # are as backed up, to the nanosecond of their mtimes.
        check = host.substitute(units[PREAMBLE] + "\n" + runbook_tar_diff_line(), dep.opt)
        assert host.sh(check).count("differs") == 0
    elif unit.startswith("3."):
        check_sqlite(host, db, written_since=True)
        assert [n for n in os.listdir(db.parent) if ".before-restore-" in n and n.endswith("-wal")]
        assert out.splitlines().count("ok") == 1  # PRAGMA integrity_check of the copy
    elif unit.startswith("4."):
        assert (storage / "tracker/etc/tracker.toml").read_text() == TOML
        assert "the files above differ from the snapshot" in out
        assert (host.scratch / "caddy/etc/Caddyfile").is_file()
        # Only the damaged file differs: unchanged ones keep their exact mtime in the archive.
        differences = [line for line in out.splitlines() if "differs" in line]
        assert differences and all(d.startswith("tracker/etc/tracker.toml:") for d in differences), \
            differences
    elif unit.startswith("5."):
        check_mysql(dep, host.manifest)
    elif unit.startswith("6.1"):
        check_sqlite(host, db, written_since=True)
        assert os.stat(db.parent).st_uid == TRACKER_UID
        assert (storage / "tracker/etc/tracker.toml").read_text() == TOML
    elif unit.startswith("6.2"):
        check_mysql(dep, host.manifest)
        assert (storage / "caddy/etc/Caddyfile").read_text() == "tracker.example.org {}\n"
        assert "mysql" in running(dep)
    else:  # pragma: no cover - test_the_runbook_has_the_sections_the_tests_expect fails first
        pytest.fail(f"no checks for runbook section {unit!r}")
    if dep is not host.dep:
        dep.remove()
