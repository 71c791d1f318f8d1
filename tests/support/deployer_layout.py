"""The torrust-tracker-deployer's host layout, generated for tests (SQLite or MySQL).

    make_layout(base, driver="sqlite3", db_name="tracker.db")  → Layout
    make_layout(base, driver="mysql", mysql_url="mysql://torrust:pw@mysql:3306/torrust_tracker")

    base/docker-compose.yml   tracker (+ mysql) and caddy services, as the deployer renders them
    base/.env                 TORRUST_TRACKER_CONFIG_OVERRIDE_* (+ MYSQL_*) values
    base/storage/tracker/{etc/tracker.toml, lib/database/<db>, log/}
    base/storage/caddy/{etc/Caddyfile, data/caddy/certificates/...}, prometheus/etc,
    base/storage/mysql/data (MySQL layout: a data directory owned by uid 999)

Ownership as on the deployer's hosts when run as root: tracker files uid 1000, directories
mode 2770, MySQL data uid 999.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from support.tracker_db import create_tracker_db

TRACKER_UID = 1000
MYSQL_UID = 999

COMPOSE = """\
# Docker Compose configuration for Torrust Tracker deployment (test fixture)
x-defaults: &defaults
  tty: true
  restart: unless-stopped

services:
  caddy:
    <<: *defaults
    image: caddy:2.10
    volumes:
      - ./storage/caddy/etc/Caddyfile:/etc/caddy/Caddyfile:ro
      - ./storage/caddy/data:/data
  tracker:
    <<: *defaults
    image: torrust/tracker:develop
    environment:
      - USER_ID=1000
      - TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER=${{TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER}}
      - TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH=${{TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH:-}}
    volumes:
      - ./storage/tracker/lib:/var/lib/torrust/tracker:Z
      - ./storage/tracker/log:/var/log/torrust/tracker:Z
      - ./storage/tracker/etc:/etc/torrust/tracker:Z
{mysql}
"""

MYSQL_SERVICE = """\
  mysql:
    <<: *defaults
    image: mysql:8.4
    environment:
      - MYSQL_ROOT_PASSWORD=${MYSQL_ROOT_PASSWORD}
      - MYSQL_DATABASE=${MYSQL_DATABASE}
      - MYSQL_USER=${MYSQL_USER}
      - MYSQL_PASSWORD=${MYSQL_PASSWORD}
    volumes:
      - ./storage/mysql/data:/var/lib/mysql
"""

TRACKER_TOML = """\
[metadata]
app = "torrust-tracker"
purpose = "configuration"
schema_version = "2.0.0"

[core]
listed = false
private = false

[core.database]
driver = "{driver}"
path = "{path}"

[[udp_trackers]]
bind_address = "0.0.0.0:6969"
"""


@dataclass
class Layout:
    """Paths of a generated deployment."""

    base: Path
    storage: Path
    compose: Path
    env: Path
    tracker_toml: Path
    database: Path | None  # host path of the SQLite database (SQLite layout)


def _own(path: Path, uid: int, mode: int | None = None) -> None:
    if os.geteuid() == 0:
        os.chown(path, uid, uid)
    if mode is not None:
        path.chmod(mode)


def make_layout(base: Path, *, driver: str = "sqlite3", db_name: str = "tracker.db",
                rows: int = 500, mysql_url: str | None = None, wal: bool = False,
                env_overrides_path: bool = True) -> Layout:
    """Write the deployer's layout under `base` (see the module docstring)."""
    storage = base / "storage"
    dirs = ["tracker/etc", "tracker/lib/database", "tracker/log", "caddy/etc",
            "caddy/data/caddy/certificates/acme", "prometheus/etc"]
    if driver == "mysql":
        dirs.append("mysql/data")
    for d in dirs:
        (storage / d).mkdir(parents=True, exist_ok=True)
    container_db = f"/var/lib/torrust/tracker/database/{db_name}"
    url = mysql_url or "mysql://torrust:s3cret%21pw@mysql:3306/torrust_tracker"
    # MySQL: the URL is in .env (overriding tracker.toml's path), or in tracker.toml itself.
    toml_path = url if driver == "mysql" and not env_overrides_path else container_db
    tracker_toml = storage / "tracker/etc/tracker.toml"
    tracker_toml.write_text(TRACKER_TOML.format(driver=driver, path=toml_path))
    (storage / "tracker/log/tracker.log").write_text("log lines are not backed up\n")
    (storage / "caddy/etc/Caddyfile").write_text("tracker.example.org {\n  reverse_proxy tracker:7070\n}\n")
    cert = storage / "caddy/data/caddy/certificates/acme/tracker.example.org.key"
    cert.write_text("-----BEGIN PRIVATE KEY-----\nsample\n-----END PRIVATE KEY-----\n")
    cert.chmod(0o600)
    (storage / "prometheus/etc/prometheus.yml").write_text("scrape_configs: []\n")
    database = None
    if driver == "sqlite3":
        database = storage / "tracker/lib/database" / db_name
        create_tracker_db(database, rows=rows, wal=wal)
    env_lines = [
        "# Docker Compose Environment Variables (test fixture)",
        "TORRUST_TRACKER_CONFIG_TOML_PATH='/etc/torrust/tracker/tracker.toml'",
        f"TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER='{driver}'",
        "TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN='MyAccessToken'",
    ]
    if driver == "mysql":
        if env_overrides_path:
            env_lines.append(f"TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH='{url}'")
        env_lines += ["MYSQL_ROOT_PASSWORD='rootpw'", "MYSQL_DATABASE='torrust_tracker'",
                      "MYSQL_USER='torrust'", "MYSQL_PASSWORD='s3cret!pw'"]
        (storage / "mysql/data/ibdata1").write_bytes(b"\0" * 4096)  # a datadir marker
        (storage / "mysql/data/mysql").mkdir(exist_ok=True)
    env = base / ".env"
    env.write_text("\n".join(env_lines) + "\n")
    env.chmod(0o600)
    compose = base / "docker-compose.yml"
    compose.write_text(COMPOSE.format(mysql=MYSQL_SERVICE if driver == "mysql" else ""))
    for path in sorted((storage / "tracker").rglob("*")):
        _own(path, TRACKER_UID, 0o2770 if path.is_dir() else None)
    _own(storage / "tracker", TRACKER_UID, 0o2770)
    if driver == "mysql":
        for path in [storage / "mysql/data", *(storage / "mysql/data").rglob("*")]:
            _own(path, MYSQL_UID)
    return Layout(base=base, storage=storage, compose=compose, env=env,
                  tracker_toml=tracker_toml, database=database)
