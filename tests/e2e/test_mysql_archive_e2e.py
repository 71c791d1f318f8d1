"""End to end: the MySQL binlog archiver in tracker-backup-archive.service, under its real
systemd sandbox, against MariaDB in docker compose on a real Docker engine.

The host side is the deployer's: a private dockerd (tests/support/docker_engine.py) runs
the compose project of tests/support/deployment.py (one `mysql` service, MariaDB with
the binlog on). The booted Debian container, with the .deb installed by apt, is laid
out like the host the agent runs on in production: the engine's socket at
/run/docker.sock, the docker CLI at /usr/bin/docker, the compose v2 plugin at
/usr/libexec/docker/cli-plugins/ (where Docker's docker-compose-plugin package puts
it), the deployment at /opt/torrust. The operator's config says `[mysql] continuous =
yes` with `exec_prefix = docker compose -f /opt/torrust/docker-compose.yml exec -T mysql`;
the generator enables the archive unit; `systemctl start tracker-backup` dumps;
`tracker-backup enable` starts the archive unit, which streams the binlog while a writer commits; a restore to a second from a
shell in the container, and the drill unit, prove the archive.
"""

from __future__ import annotations

import json
import math
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from e2e.conftest import installed_box
from e2e.guest import journal_text, show
from support.deployment import BACKUP_USER, DATABASE, Deployment
from support.docker_engine import DockerEngine, EngineUnavailable, compose_plugin
from support.mariadb import MysqlWriter
from support.polling import wait_for
from support.proc_scan import ProcScanner
from tracker_backup.engines.mysql.binlog import pitr

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.mysql]

CONF = "/etc/tracker-backup/tracker-backup.conf"
UNIT = "tracker-backup-archive.service"
BACKUPS = "/srv/backups/tracker"
OPT = "/opt/torrust"
EXEC_PREFIX = f"docker compose -f {OPT}/docker-compose.yml exec -T mysql"
RESTORE_USER = "tb_restore"
RESTORE_PASSWORD_FILE = "/root/mysql-restore.password"
# Where the compose v2 plugin is: Docker's docker-compose-plugin package on one release,
# installed by hand into root's ~/.docker (as Docker's docs show) on the other.
PLUGIN_DIR = {"bookworm": "/usr/libexec/docker/cli-plugins", "trixie": "/root/.docker/cli-plugins"}
FIRST_NEW = {"bookworm": 5 * 10**12, "trixie": 6 * 10**12}  # the writer's numbers, per release


def config_text() -> str:
    return f"""[backup]
path = {BACKUPS}

[schedule]
enabled = yes        ; the archive unit follows the same switch as the timers
on_calendar = *-*-* 03:00:00

[mysql]
database = {DATABASE}
user = {BACKUP_USER}
; password: /etc/tracker-backup/mysql.password (a systemd credential)
exec_prefix = {EXEC_PREFIX}
continuous = yes
"""


class Site:
    """The host side: the private engine and the deployment, with the accounts set up."""

    def __init__(self, engine: DockerEngine, base: Path):
        self.engine = engine
        self.base = base
        self.dep = Deployment(engine, base, tracker=False)
        self.password = "agent-" + secrets.token_hex(12)  # must never show anywhere
        self.restore_password = "restore-" + secrets.token_hex(12)
        self.dep.up()
        self.dep.setup_accounts(self.password, torrents=3000)
        self.dep.create_user(RESTORE_USER, self.restore_password, ["ALL ON *.*"])


@pytest.fixture(scope="module")
def site():
    """One private dockerd and one MariaDB container for the whole module (both releases)."""
    try:
        engine = DockerEngine.start()
    except EngineUnavailable as exc:
        pytest.skip(f"no Docker engine can start here: {exc}")
    base = None
    try:
        engine.ensure_image()
        # Outside /tmp: the deployment is bind-mounted into the container, whose /tmp
        # Debian 13 mounts a tmpfs over; short, for the socket paths inside.
        base = Path(tempfile.mkdtemp(prefix="tbm-", dir="/var/tmp"))
        s = Site(engine, base)
        try:
            yield s
        finally:
            s.dep.remove()
    finally:
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)
        engine.stop()


@pytest.fixture(scope="module")
def box(site, release, release_deb, tmp_path_factory):
    """The booted release with the package, Docker's client side and the deployment."""
    binds = {
        site.engine.socket: "/run/docker.sock",
        Path(DockerEngine.client()).resolve(): "/usr/bin/docker",
        compose_plugin(): f"{PLUGIN_DIR[release]}/docker-compose",
        site.dep.opt: OPT,
    }
    with installed_box(release, release_deb, tmp_path_factory.mktemp(f"nspawn-{release}"),
                       binds=binds) as b:
        b.write("/etc/tracker-backup/mysql.password", site.password + "\n", mode="0600")
        b.write(RESTORE_PASSWORD_FILE, site.restore_password + "\n", mode="0600")
        b.write(CONF, config_text())
        b.run(["systemctl", "daemon-reload"])
        yield b


def archive_status(box) -> dict:
    proc = box.run(["cat", f"{BACKUPS}/archive/mysql/status.json"], check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def caught_up(box) -> bool:
    st = archive_status(box)
    return bool(st.get("streaming") and (st.get("lag_seconds") or 0) < 2.0
                and st.get("bytes_behind") == 0 and st.get("updated", 0) > time.time() - 6)


def binlog_tools(site) -> list[str]:
    """Binlog tool processes left in the mysql container (docker exec does not end them)."""
    script = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"
    out = site.dep.compose("exec", "-T", "mysql", "sh", "-c", script).stdout
    return [line for line in out.splitlines() if line.startswith("mariadb-binlog")]


def new_torrents(site, database: str, first: int) -> set[int]:
    rows = site.dep.sql("SELECT info_hash FROM torrents", database)
    return {n for n in (int(r[0], 16) for r in rows) if first <= n < first + 10**12}


@pytest.fixture
def scanner(site):
    """Every /proc/*/cmdline and environ, watched for the passwords while the test runs.

    The host's /proc shows the nspawn container's and the mysql container's processes too.
    """
    scan = ProcScanner(site.password, site.restore_password)
    scan.start()
    try:
        yield scan
    finally:
        scan.stop()


def test_the_archive_unit_streams_the_binlog_through_docker_compose_under_its_sandbox(
        site, box, release, tmp_path, scanner):
    # The generator enabled the unit from the config alone (multi-user.target wants it).
    assert box.run(["test", "-e", f"/run/systemd/generator/multi-user.target.wants/{UNIT}"],
                   check=False).returncode == 0, (
        box.run(["journalctl", "--no-pager", "-t", "tracker-backup-generator"]).stdout,
        box.run(["tracker-backup", "check-config"], check=False))
    unit = box.run(["systemctl", "cat", UNIT]).stdout
    assert "LoadCredential=mysql-password:/etc/tracker-backup/mysql.password" in unit, unit
    # Root's ~/.docker (the plugin there) is bound read-only; the rest of /root stays hidden.
    in_home = PLUGIN_DIR[release].startswith("/root/")
    assert ('BindReadOnlyPaths="-/root/.docker"' in unit) == in_home, unit
    assert ("ProtectHome=tmpfs" in unit) == in_home, unit
    first = FIRST_NEW[release]
    acks = tmp_path / "acks.txt"
    writer = MysqlWriter(site.dep, DATABASE, tmp_path / "w.json", rate=50, existing=3000,
                         acks=acks, start_new=first)
    try:
        # The dump, by the backup service under its sandbox, through docker compose.
        box.run(["systemctl", "start", "tracker-backup.service"], timeout=600, check=False)
        props = show(box, "tracker-backup.service", "Result", "ExecMainStatus")
        assert props == {"Result": "success", "ExecMainStatus": "0"}, \
            (props, journal_text(box, "tracker-backup.service")[-3000:])
        # As the operator does after setting continuous = yes: `enable` reloads and starts it.
        out = box.run(["tracker-backup", "enable"], timeout=300).stdout
        assert f"{UNIT}: started" in out, out
        wait_for(lambda: show(box, UNIT, "ActiveState")["ActiveState"] != "activating", 120,
                 "READY=1")
        props = show(box, UNIT, "ActiveState", "Type")
        assert props == {"ActiveState": "active", "Type": "notify"}, (props, journal_text(box, UNIT)[-3000:])
        wait_for(lambda: caught_up(box), 120, "the archiver to catch up",
                 diagnose=lambda: archive_status(box))
        time.sleep(4)
        target = math.floor(time.time()) - 1  # a second well inside the archived stretch
        time.sleep(3)
    finally:
        stats = writer.stop()
    assert stats.get("errors", 0) == 0, stats
    wait_for(lambda: caught_up(box), 120, "the archiver to catch up",
             diagnose=lambda: archive_status(box))
    st = archive_status(box)
    assert st.get("streaming") and not st.get("stalled"), st
    assert show(box, UNIT, "ActiveState")["ActiveState"] == "active", journal_text(box, UNIT)[-3000:]
    text = journal_text(box, UNIT)
    assert "new archive generation" in text, text

    # PITR to that second, from a shell in the container, as the operator runs it.
    at = pitr.format_time(target)
    copy = f"pitr_{release}"
    out = box.run(["tracker-backup", "restore", "--kind", "mysql", "--at", at, "--database", copy,
                   "--mysql-user", RESTORE_USER, "--mysql-password-file", RESTORE_PASSWORD_FILE],
                  timeout=600).stdout
    assert "CHECK TABLE ok" in out, out
    committed = [tuple(map(float, line.split())) for line in acks.read_text().splitlines()]
    got = new_torrents(site, copy, first)
    must = {int(n) for n, _begin, ack in committed if ack < target + 1 - 0.05}
    never = {int(n) for n, begin, _ack in committed if begin >= target + 1 + 0.05}
    assert must and never, committed[:3]
    assert must <= got, sorted(must - got)[:5]
    assert not (never & got), sorted(never & got)[:5]
    total, metric = site.dep.invariant(copy)
    assert total == metric
    site.dep.sql(f"DROP DATABASE `{copy}`")

    # The drill unit (sandboxed like the backup, the backup path its only writable
    # path) restores a random second of the archive into a scratch database.
    box.run(["systemctl", "start", "tracker-backup-drill.service"], timeout=600, check=False)
    props = show(box, "tracker-backup-drill.service", "Result", "ExecMainStatus")
    drill_log = journal_text(box, "tracker-backup-drill.service")
    assert props == {"Result": "success", "ExecMainStatus": "0"}, (props, drill_log[-3000:])
    assert "CHECK TABLE ok" in drill_log, drill_log[-3000:]
    # The deployment's backup account has no BINLOG ADMIN: the drill's scratch loads go
    # into the binlog, and the drill says so (engines/mysql/scratch.py).
    assert "may not SET sql_log_bin" in drill_log, drill_log[-3000:]
    assert not [d for d in site.dep.databases() if d.startswith("tracker_backup_verify_")]
    scanner.stop()
    assert not scanner.leaks, scanner.leaks
    # The scan covered the streaming side (long-lived: it cannot slip between two scans). The
    # dump lasts a moment and a loaded host can scan past it (CI, once): its argv/environ are
    # proven by tests/docker/test_compose_mysql.py and tests/engines/mysql/test_mysql_backup.py.
    missing = {"docker", "mariadb-binlog"} - scanner.seen
    assert not missing, (sorted(missing), scanner.scans, sorted(scanner.seen))

    # Stop: clean, and the binlog tool goes with the unit (none left in the container).
    box.run(["systemctl", "stop", UNIT], timeout=120)
    props = show(box, UNIT, "Result", "ExecMainStatus")
    assert props == {"Result": "success", "ExecMainStatus": "0"}, (props, journal_text(box, UNIT)[-3000:])
    wait_for(lambda: not binlog_tools(site), 15, "the binlog tool to go", diagnose=lambda: binlog_tools(site))

    # No password anywhere in the container's journal (every unit, the shell's restore).
    journal = box.run(["journalctl", "--no-pager", "-o", "verbose"]).stdout
    assert site.password not in journal and site.restore_password not in journal


def test_security_exposure_of_the_archive_unit_with_docker(box):
    out = box.run(["systemd-analyze", "security", "--no-pager", UNIT]).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("→ Overall exposure level")]
    assert line, out
    exposure = float(line[0].split(":")[1].split()[0])
    print(f"systemd-analyze security {UNIT} ([mysql] exec_prefix = docker compose ...): {exposure}")
    assert exposure <= 2.0, out
