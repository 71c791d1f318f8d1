"""Every command block of docs/restore.md runs here, against a real snapshot.

The runbook's paths (/opt/torrust, /var/backups/tracker-backup, /etc/tracker-backup,
/var/tmp/tracker-restore) are pointed at a test directory. Real: the snapshot (taken by
the agent from a live SQLite database under a writer, a private MariaDB server and a
storage directory), zstd, sqlite3, tar, sha256sum, the mariadb client, the agent.

MOCK: `docker` (no Docker engine can run here). A fake `docker` on PATH logs each call;
`compose stop tracker` stops the test's tracker-style writer, and `compose exec -T mysql
CMD` runs CMD on this host with the container's environment (MYSQL_ROOT_PASSWORD) and
`mysql`/`mysqladmin` bound to the private MariaDB server, as inside the mysql container.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import AGENT
from support import mariadb as mariadb_support
from support.restore_kit import leave_stale_wal
from support.tracker_db import create_tracker_db

pytestmark = pytest.mark.mysql
private_mariadb = mariadb_support.private_mariadb

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "restore.md"
NOBODY = 65534
TOML = "[core]\nlisted = false\n# restored\n"
PREAMBLE = "1. Find the snapshot and check it"
FAKE_DOCKER = r"""#!/bin/sh
# FAKE docker for tests (no Docker engine here): see tests/commands/test_restore_runbook.py.
echo "$*" >> "$FAKE_DOCKER_LOG"
[ "$1" = compose ] || { echo "fake docker: only compose" >&2; exit 2; }
shift
while [ $# -gt 0 ]; do
    case "$1" in -f|--project-directory) shift 2 ;; *) break ;; esac
done
cmd=$1; shift
case "$cmd" in
exec)
    [ "$1" = -T ] && shift
    [ "$1" = mysql ] || { echo "fake docker: no service $1" >&2; exit 3; }
    shift
    MYSQL_ROOT_PASSWORD="$FAKE_MYSQL_ROOT_PASSWORD" PATH="$FAKE_MYSQL_BIN:$PATH" exec "$@" ;;
stop|down)
    if [ -f "$FAKE_TRACKER_PIDFILE" ] && { [ "$cmd" = down ] || [ "$*" = tracker ]; }; then
        pid=$(cat "$FAKE_TRACKER_PIDFILE")
        kill "$pid" 2>/dev/null || true
        while [ -d "/proc/$pid" ] && ! grep -q ') Z' "/proc/$pid/stat" 2>/dev/null; do sleep 0.05; done
    fi ;;
start|up|restart|ps) ;;
*) echo "fake docker: unknown compose command $cmd" >&2; exit 4 ;;
esac
"""


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
    """A deployer-like host in a directory: storage, a live writer, MariaDB, a snapshot."""

    def __init__(self, tmp: Path, server, start_writer):
        self.tmp = tmp
        self.server = server
        self.opt = tmp / "host/opt/torrust"
        self.storage = self.opt / "storage"
        self.backups = tmp / "host/var/backups/tracker-backup"
        self.etc = tmp / "host/etc/tracker-backup"
        self.scratch = tmp / "host/var/tmp/tracker-restore"
        self.bin = tmp / "bin"
        self.db = self.storage / "tracker/lib/database/tracker.db"
        self.docker_log = tmp / "docker.log"
        for d in ("tracker/etc", "tracker/lib/database", "tracker/log", "caddy/etc"):
            (self.storage / d).mkdir(parents=True)
        (self.opt / "docker-compose.yml").write_text("services: {}\n")
        (self.storage / "tracker/etc/tracker.toml").write_text(TOML)
        (self.storage / "caddy/etc/Caddyfile").write_text("tracker.example.org {}\n")
        create_tracker_db(self.db, rows=2000)
        for p in (self.db.parent, self.db):
            os.chown(p, NOBODY, NOBODY)
        os.chmod(self.db, 0o640)
        server.create_tracker_db("torrust_tracker", rows=1500)
        self.etc.mkdir(parents=True)
        self.backups.parent.mkdir(parents=True)
        (self.etc / "mysql-root.password").write_text("not-needed-with-socket-auth\n")
        os.chmod(self.etc / "mysql-root.password", 0o600)
        self.config = self.etc / "tracker-backup.conf"
        self.config.write_text(f"""
[backup]
path = {self.backups}
[sqlite]
database = {self.db}
[mysql]
database = torrust_tracker
socket = {server.socket}
user = root
exec_prefix = docker compose -f {self.opt}/docker-compose.yml exec -T mysql
[files]
root = {self.storage}
include = tracker/etc/** caddy/etc/**
exclude = tracker/log/**
""")
        self._make_bin()
        self.writer = start_writer(self.db, rate=200)
        self.pidfile = tmp / "tracker.pid"
        self.pidfile.write_text(str(self.writer.proc.pid))
        out = self.sh("tracker-backup run --no-prune")
        self.snap = self.backups / out.strip().splitlines()[-1]
        self.manifest = json.loads((self.snap / "MANIFEST.json").read_text())

    def _make_bin(self) -> None:
        mysql_bin = self.tmp / "mysql-bin"
        for d in (self.bin, mysql_bin):
            d.mkdir()
        scripts = {
            self.bin / "docker": FAKE_DOCKER,
            self.bin / "tracker-backup": f"#!/bin/sh\nPYTHONPATH={AGENT} exec {sys.executable} "
                                         f"-m tracker_backup --config {self.config} \"$@\"\n",
            mysql_bin / "mysql": f"#!/bin/sh\nexec mariadb --socket={self.server.socket} \"$@\"\n",
            mysql_bin / "mysqladmin": f"#!/bin/sh\nexec mariadb-admin "
                                      f"--socket={self.server.socket} \"$@\"\n",
        }
        for path, text in scripts.items():
            path.write_text(text)
            path.chmod(0o755)
        self.env = {**{k: v for k, v in os.environ.items()
                       if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "INVOCATION_ID")},
                    "PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin",
                    "FAKE_DOCKER_LOG": str(self.docker_log),
                    "FAKE_TRACKER_PIDFILE": str(self.tmp / "tracker.pid"),
                    "FAKE_MYSQL_BIN": str(mysql_bin),
                    "FAKE_MYSQL_ROOT_PASSWORD": "root-password-of-the-container"}

    def substitute(self, text: str, opt: Path | None = None) -> str:
        for old, new in (("/opt/torrust", str(opt or self.opt)),
                         ("/var/backups/tracker-backup", str(self.backups)),
                         ("/var/tmp/tracker-restore", str(self.scratch)),
                         ("/etc/tracker-backup", str(self.etc))):
            text = text.replace(old, new)
        return text

    def sh(self, script: str) -> str:
        proc = subprocess.run(["sh", "-eu", "-c", script], capture_output=True, text=True,
                              env=self.env, timeout=300, cwd=self.tmp)
        assert proc.returncode == 0, (f"exit {proc.returncode}\n--- script\n{script}\n--- stdout\n"
                                      f"{proc.stdout}\n--- stderr\n{proc.stderr}")
        return proc.stdout

    def docker_calls(self) -> list[str]:
        return self.docker_log.read_text().splitlines() if self.docker_log.exists() else []


@pytest.fixture
def host(tmp_path, private_mariadb, start_writer) -> Host:
    return Host(tmp_path, private_mariadb, start_writer)


def check_sqlite(host: Host, db: Path) -> None:
    st = os.stat(db)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o640)
    conn = sqlite3.connect(db)  # a normal open: a stale -wal beside it would be applied now
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                  for t in host.manifest["sources"]["sqlite"]["row_counts"]}
    finally:
        conn.close()
    assert counts == host.manifest["sources"]["sqlite"]["row_counts"]


def check_mysql(host: Host) -> None:
    for table, count in host.manifest["sources"]["mysql"]["row_counts"].items():
        got = int(host.server.value(f"SELECT COUNT(*) FROM `{table}`", "torrust_tracker"))
        assert got == count, table
    total, metric = host.server.invariant("torrust_tracker")
    assert total == metric


def damage(host: Host) -> None:
    """What the restore must undo: edited files, lost MySQL rows; the writer changed SQLite."""
    (host.storage / "tracker/etc/tracker.toml").write_text("broken\n")
    host.server.sql("DELETE FROM torrents WHERE id % 2 = 0", "torrust_tracker")


@pytest.mark.parametrize("unit", UNITS)
def test_runbook_section_runs_and_restores(host, unit):
    units = runbook_units()
    new_host = unit.startswith("6.")
    opt = host.opt
    if new_host:  # an empty deployment on a "new host"; the old one is gone
        host.writer.stop()
        opt = host.tmp / "newhost/opt/torrust"
        (opt / "storage").mkdir(parents=True)
        (opt / "docker-compose.yml").write_text("services: {}\n")
        host.server.sql("DROP DATABASE torrust_tracker")
    else:
        damage(host)
    if unit.startswith(("2.", "3.")):  # the tracker died leaving committed frames in its -wal
        host.writer.stop()
        leave_stale_wal(host.db, rows=500)
    script = host.substitute(units[PREAMBLE] + "\n" + units[unit], opt)
    out = host.sh(script)
    assert f"{host.snap.relative_to(host.backups)}" in out
    checked = sorted(m.group(1) for m in re.finditer(r"^(\S+\.zst): OK$", out, re.M))
    assert checked == sorted(a["path"] for a in host.manifest["artifacts"])  # sha256sum -c
    calls = host.docker_calls()
    storage = opt / "storage"
    db = storage / "tracker/lib/database/tracker.db"

    if unit.startswith("2."):
        assert (host.scratch / "tracker/etc/tracker.toml").read_text() == TOML
        assert (storage / "tracker/etc/tracker.toml").read_text() == TOML
        check_sqlite(host, db)
        check_mysql(host)
        assert [n for n in os.listdir(db.parent) if ".before-restore-" in n]
        assert "drill OK" in out and "last drill:   ok" in out
        # 6.3's check, with the runbook's own `tar -df` line: the restored storage files
        # are as backed up, to the nanosecond of their mtimes.
        check = host.substitute(units[PREAMBLE] + "\n" + runbook_tar_diff_line(), opt)
        assert host.sh(check).count("differs") == 0
    elif unit.startswith("3."):
        check_sqlite(host, db)
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
        check_mysql(host)
    elif unit.startswith("6.1"):
        check_sqlite(host, db)
        assert os.stat(db.parent).st_uid == NOBODY
        assert (storage / "tracker/etc/tracker.toml").read_text() == TOML
    elif unit.startswith("6.2"):
        check_mysql(host)
        assert (storage / "caddy/etc/Caddyfile").read_text() == "tracker.example.org {}\n"
    else:  # pragma: no cover - test_the_runbook_has_the_sections_the_tests_expect fails first
        pytest.fail(f"no checks for runbook section {unit!r}")
    if any(c.endswith("stop tracker") for c in calls):
        stops = [i for i, c in enumerate(calls) if c.endswith("stop tracker")]
        starts = [i for i, c in enumerate(calls) if c.endswith("start tracker")]
        assert starts and starts[-1] > stops[0], "the tracker was stopped and never started"
    shutil.rmtree(host.scratch, ignore_errors=True)
