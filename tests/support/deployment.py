"""A Torrust deployment in the deployer's layout, run by docker compose on a real engine.

    dep = Deployment(engine, base)        # base/opt/torrust: docker-compose.yml, .env, storage/
    dep.up()                              # `mysql` (MariaDB image) and `tracker` (the writer, uid 1000)
    dep.sql("SELECT 1")                   # as root inside the mysql container (socket auth)
    dep.exec_prefix                       # "docker compose -f .../docker-compose.yml exec -T mysql"
    dep.down()

Like /opt/torrust on a deployer host: the `mysql` service keeps its data in
the bind-mounted `storage/mysql/data` (owned by uid 999 inside), with no
published port and binary logging on (MySQL 8's default; MariaDB's needs
--log-bin); the `tracker` service runs tests/support/tracker_writer.py as uid
1000 on the SQLite database `storage/tracker/lib/database/tracker.db` (its
directory 2770, as the tracker leaves it); `.env` holds the tracker's MySQL
URL and MYSQL_ROOT_PASSWORD; a `caddy` service stands in for the reverse proxy (it
only idles, for the runbook's `docker compose restart tracker caddy`). For tests only, the server's socket directory is also bind-mounted at
`storage/mysql/run`, so host-side helpers (mysql_writer.py) can reach it; the
agent itself always goes through `exec_prefix`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from support import mariadb as mariadb_support
from support.docker_engine import MYSQL_UID, DockerEngine
from support.tracker_db import create_tracker_db

SUPPORT = Path(__file__).resolve().parent
TRACKER_UID = 1000
DATABASE = "torrust_tracker"
TRACKER_USER, TRACKER_PASSWORD = "torrust", "tracker-password-in-dotenv"
ROOT_PASSWORD = "root-password-in-dotenv"  # the container's MYSQL_ROOT_PASSWORD, as the deployer sets
BACKUP_USER = "tracker_backup"
MYSQL_ENTRYPOINT = """#!/bin/sh
# The mysql service's entrypoint (as the official image's: initialise an empty datadir once).
set -e
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld && chmod 0755 /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
    chown mysql:mysql /var/lib/mysql
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql \\
        --auth-root-authentication-method=socket --skip-test-db >/dev/null
    if [ -n "${MYSQL_ROOT_PASSWORD:-}" ]; then  # root also by password, as MYSQL_ROOT_PASSWORD says
        mariadbd --user=mysql --datadir=/var/lib/mysql --skip-networking --socket=/run/mysqld/init.sock &
        pid=$!
        until mariadb --socket=/run/mysqld/init.sock -e 'SELECT 1' >/dev/null 2>&1; do sleep 0.2; done
        printf "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('%s');\\n" \\
            "$MYSQL_ROOT_PASSWORD" | mariadb --socket=/run/mysqld/init.sock
        kill "$pid" && wait "$pid" || true
    fi
fi
exec mariadbd --user=mysql --datadir=/var/lib/mysql --bind-address=0.0.0.0 --skip-name-resolve \\
    --innodb-buffer-pool-size=256M "$@"
"""
BINLOG_ARGS = ["--log-bin=binlog", "--server-id=1", "--binlog-format=ROW"]


class Deployment:
    """/opt/torrust-like directory with a compose project of its own on `engine`."""

    def __init__(self, engine: DockerEngine, base: Path, *, log_bin: bool = True,
                 tracker_rate: float = 50, torrents: int = 2000, server_args: tuple = (),
                 tracker: bool = True, empty: bool = False):
        self.engine = engine
        self.opt = base / "opt/torrust"
        self.storage = self.opt / "storage"
        self.compose_file = self.opt / "docker-compose.yml"
        self.project = f"tb{os.getpid()}x{time.monotonic_ns() % 10**6}"
        self.db = self.storage / "tracker/lib/database/tracker.db"
        self.writer_stats = self.storage / "tracker/log/writer-stats.json"
        self.socket = self.storage / "mysql/run/mysqld.sock"
        self.datadir = self.storage / "mysql/data"
        self.image = engine.ensure_image()
        for d in ("tracker/etc", "tracker/lib/database", "tracker/log", "mysql/data", "mysql/run",
                  "caddy/etc"):
            (self.storage / d).mkdir(parents=True, exist_ok=True)
        if not empty:  # empty: a freshly provisioned host, before anything is restored
            (self.storage / "tracker/etc/tracker.toml").write_text(
                '[core.database]\ndriver = "sqlite3"\n'
                'path = "/var/lib/torrust/tracker/database/tracker.db"\n')
            (self.storage / "caddy/etc/Caddyfile").write_text("tracker.example.org {}\n")
            create_tracker_db(self.db, rows=torrents)
        for d in (self.storage / "tracker/lib/database", self.storage / "tracker/log"):
            os.chown(d, TRACKER_UID, TRACKER_UID)
            os.chmod(d, 0o2770)
        if not empty:
            os.chown(self.db, TRACKER_UID, TRACKER_UID)
            os.chmod(self.db, 0o640)
        for d in ("mysql/data", "mysql/run"):
            os.chown(self.storage / d, MYSQL_UID, MYSQL_UID)
        entry = self.opt / "mysql-entrypoint.sh"
        entry.write_text(MYSQL_ENTRYPOINT)
        entry.chmod(0o755)
        (self.opt / ".env").write_text(
            "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH="
            f"'mysql://{TRACKER_USER}:{TRACKER_PASSWORD}@mysql:3306/{DATABASE}'\n"
            f"MYSQL_ROOT_PASSWORD='{ROOT_PASSWORD}'\n")
        os.chmod(self.opt / ".env", 0o600)
        self.tracker_rate = tracker_rate
        self.tracker = tracker  # False: the mysql service only (benchmarks)
        self.compose_file.write_text(self._compose_yaml(log_bin, list(server_args)))

    def _compose_yaml(self, log_bin: bool, server_args: list[str]) -> str:
        mysql_args = (BINLOG_ARGS if log_bin else []) + server_args
        writer = ["python3", "/opt/tracker-writer/tracker_writer.py",
                  "/var/lib/torrust/tracker/database/tracker.db", "--rate", str(self.tracker_rate),
                  "--stats", "/var/log/torrust/tracker/writer-stats.json", "--existing", "1000"]
        spec = {  # JSON is YAML
            "name": self.project,
            "services": {
                "mysql": {
                    "image": self.image,
                    "entrypoint": ["/mysql-entrypoint.sh"],
                    "environment": {"MYSQL_ROOT_PASSWORD": "${MYSQL_ROOT_PASSWORD}"},
                    "command": mysql_args,
                    "volumes": ["./storage/mysql/data:/var/lib/mysql",
                                "./storage/mysql/run:/run/mysqld",
                                "./mysql-entrypoint.sh:/mysql-entrypoint.sh:ro"],
                    "stop_grace_period": "30s",
                },
                "tracker": {
                    "image": self.image,
                    "user": f"{TRACKER_UID}:{TRACKER_UID}",
                    "command": writer,
                    "env_file": [".env"],
                    "volumes": ["./storage/tracker/lib/database:/var/lib/torrust/tracker/database",
                                "./storage/tracker/log:/var/log/torrust/tracker",
                                "./storage/tracker/etc:/etc/torrust/tracker:ro",
                                f"{SUPPORT}:/opt/tracker-writer:ro"],
                    "stop_signal": "SIGTERM",
                },
            },
        }
        if self.tracker:
            # The deployer's reverse proxy, only for its place in the runbook (restart after files).
            spec["services"]["caddy"] = {
                "image": self.image,
                "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
                "volumes": ["./storage/caddy/etc:/etc/caddy:ro"],
            }
        else:
            del spec["services"]["tracker"]
        return json.dumps(spec, indent=2) + "\n"

    # -- compose -----------------------------------------------------------
    @property
    def exec_prefix(self) -> str:
        """The agent's [mysql] exec_prefix for this deployment."""
        return f"docker compose -f {self.compose_file} exec -T mysql"

    def compose(self, *args: str, input: bytes | None = None, check: bool = True,
                timeout: float = 300) -> subprocess.CompletedProcess:
        return self.engine.docker("compose", "-f", str(self.compose_file), *args, input=input,
                                  check=check, timeout=timeout)

    def up(self, *services: str) -> None:
        """Start services (all by default) and wait for what they serve."""
        before = self.writer().get("started")
        self.compose("up", "-d", "--no-build", *services)
        if not services or "mysql" in services:
            self.wait_mysql()
        if (not services and self.tracker) or "tracker" in services:
            self.wait_writer(before)

    def wait_mysql(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            probe = self.compose("exec", "-T", "mysql", "mariadb", "-e", "SELECT 1", check=False)
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                logs = self.compose("logs", "--no-color", "--tail", "40", "mysql", check=False)
                raise RuntimeError(f"the mysql service did not come up: {probe.stderr}\n{logs.stdout}")
            time.sleep(0.3)

    def writer(self) -> dict:
        try:
            return json.loads(self.writer_stats.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def wait_writer(self, previous_start: float | None = None, timeout: float = 60) -> None:
        """Until a writer process other than the one started at `previous_start` commits."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.writer()
            if now.get("running") and now.get("ops", 0) >= 5 and now.get("started") != previous_start:
                return
            if time.monotonic() > deadline:
                logs = self.compose("logs", "--no-color", "--tail", "40", "tracker", check=False)
                raise RuntimeError(f"the tracker writer did not start: {self.writer()}\n{logs.stdout}")
            time.sleep(0.1)

    def down(self) -> None:
        """Remove the project's containers and network (the storage stays in the directory)."""
        self.compose("down", "--remove-orphans", "-t", "20", check=False)

    # -- SQL as root, inside the mysql container -----------------------------
    def sql(self, text: str, database: str | None = None) -> list[list[str]]:
        """Run SQL as root in the mysql container (SQL on stdin); rows split on tabs."""
        args = ["exec", "-T", "mysql", "mariadb", "--batch", "--skip-column-names"]
        if database:
            args.append(f"--database={database}")
        proc = self.compose(*args, input=text.encode(), check=False, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"SQL failed: {proc.stderr.strip()}\n{text[:500]}")
        return [line.split("\t") for line in proc.stdout.splitlines()]

    def value(self, text: str, database: str | None = None) -> str:
        return self.sql(text, database)[0][0]

    # mariadb.MariaDB's helpers use nothing but self.sql: the same SQL, run in the container.
    create_tracker_db = mariadb_support.MariaDB.create_tracker_db
    create_user = mariadb_support.MariaDB.create_user
    invariant = mariadb_support.MariaDB.invariant
    databases = mariadb_support.MariaDB.databases
    purge_binlogs = mariadb_support.MariaDB.purge_binlogs

    def setup_accounts(self, backup_password: str, torrents: int = 3000) -> None:
        """The tracker's database and user (as in .env) and the agent's own account."""
        self.create_tracker_db(DATABASE, rows=torrents)
        self.create_user(TRACKER_USER, TRACKER_PASSWORD, [f"ALL ON `{DATABASE}`.*"], host="%")
        self.create_user(BACKUP_USER, backup_password, [
            f"ALL ON `{DATABASE}`.*",
            "ALL ON `tracker\\_backup\\_verify\\_%`.*",
            "BINLOG MONITOR, REPLICATION SLAVE, BINLOG REPLAY ON *.*"])

    def remove(self) -> None:
        """down(), then delete the whole directory (files owned by 999/1000 included)."""
        self.down()
        shutil.rmtree(self.opt.parent.parent, ignore_errors=True)
