#!/usr/bin/env python3
"""Generate a sample Torrust tracker storage directory and a config that backs it up.

Usage: make-sample-storage.py DIR [--rows N]
Layout follows the torrust-tracker-deployer: DIR/storage/tracker/{etc/tracker.toml,
lib/database/tracker.db, log}, DIR/storage/caddy/etc/Caddyfile, a TLS certificate.
"""

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.tracker_db import create_tracker_db  # noqa: E402

TRACKER_TOML = """[metadata]
app = "torrust-tracker"
purpose = "configuration"
schema_version = "2.0.0"

[logging]
threshold = "info"

[core]
listed = false
private = false

[core.database]
driver = "sqlite3"
path = "/var/lib/torrust/tracker/database/tracker.db"

[[udp_trackers]]
bind_address = "0.0.0.0:6969"

[[http_trackers]]
bind_address = "0.0.0.0:7070"
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--rows", type=int, default=50_000)
    args = ap.parse_args()
    base = args.dir.resolve()
    storage = base / "storage"
    db = storage / "tracker/lib/database/tracker.db"
    for d in ("tracker/etc", "tracker/lib/database", "tracker/log", "caddy/etc", "caddy/data/certs"):
        (storage / d).mkdir(parents=True, exist_ok=True)
    (storage / "tracker/etc/tracker.toml").write_text(TRACKER_TOML)
    (storage / "tracker/log/tracker.log").write_text("log lines are not backed up\n")
    (storage / "caddy/etc/Caddyfile").write_text("tracker.example.org {\n  reverse_proxy tracker:7070\n}\n")
    key, crt = storage / "caddy/data/certs/tracker.key", storage / "caddy/data/certs/tracker.crt"
    if not crt.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                        "-subj", "/CN=tracker.example.org", "-keyout", str(key), "-out", str(crt)],
                       check=False, capture_output=True)
        if not crt.exists():  # no openssl: a placeholder keeps the layout
            crt.write_text("-----BEGIN CERTIFICATE-----\nsample\n-----END CERTIFICATE-----\n")
        key.chmod(0o600) if key.exists() else None
    if not db.exists():
        create_tracker_db(db, rows=args.rows, wal=True)
    conf = base / "tracker-backup.conf"
    conf.write_text(f"""; tracker-backup configuration for the sample storage (see docs/configuration.md)
[backup]
path = {base / "backups"}
compression = zstd
verify = full

[retention]
keep_days = 7
keep_last = 3

[sqlite]
database = {db}

[files]
root = {storage}
include = tracker/etc/** caddy/etc/** caddy/data/certs/**
exclude = tracker/log/**
""")
    print(f"sample storage in {storage}, config {conf}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
