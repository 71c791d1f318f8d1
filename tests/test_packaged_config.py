"""The packaged default config backs up the deployer's layout, TLS certificates included (item 4)."""

from __future__ import annotations

import subprocess

from conftest import ROOT, Cli
from support.deployer_layout import make_layout

CONFFILE = ROOT / "packaging/tracker-backup.conf"


def test_packaged_config_backs_up_caddys_certificates_and_keys(tmp_path):
    layout = make_layout(tmp_path / "opt/torrust")
    text = (CONFFILE.read_text().replace("/opt/torrust/storage", str(layout.storage))
            .replace("/var/backups/tracker-backup", str(tmp_path / "backups")))
    conf = tmp_path / "tracker-backup.conf"
    conf.write_text(text)
    snap_id = Cli(conf)("run", check=True).stdout.strip()
    archive = tmp_path / "backups" / snap_id / "files.tar.zst"
    names = subprocess.run(f"zstd -dc {archive} | tar -tf -", shell=True, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    assert "caddy/data/caddy/certificates/acme/tracker.example.org.key" in names
    assert "caddy/etc/Caddyfile" in names and "tracker/etc/tracker.toml" in names
    assert (tmp_path / "backups" / snap_id / "sqlite/tracker.db.zst").is_file()


def test_packaged_config_says_the_database_name_depends_on_tracker_toml():
    text = CONFFILE.read_text()
    assert "tracker.db in the" in text and "sqlite3.db in the tracker's own default" in text
