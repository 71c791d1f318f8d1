"""Files source: selection, SQLite and MySQL files left out, metadata and symlinks kept, read errors."""

from __future__ import annotations

import os
import shutil
import tarfile
import threading
import time
from pathlib import Path

import pytest

from conftest import Cli, write_config
from support.tracker_db import create_tracker_db
from tracker_backup.engines.files.select import matches

NOBODY = 65534


def archive_members(backups: Path) -> dict[str, tarfile.TarInfo]:
    snap = sorted(p for p in backups.iterdir() if p.name[:1].isdigit())[-1]
    art = snap / "files.tar.zst"
    if art.exists():
        import zstandard

        with open(art, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as raw, \
                tarfile.open(fileobj=raw, mode="r|") as tar:
            return {m.name: m for m in tar}
    with tarfile.open(snap / "files.tar") as tar:
        return {m.name: m for m in tar.getmembers()}


def files_config(tmp_path: Path, root: Path, include: str = "**", exclude: str = "",
                 extra: str = "") -> Path:
    return write_config(tmp_path / "files.conf", f"""
[backup]
path = {tmp_path / "backups"}
{extra}
[files]
root = {root}
include = {include}
exclude = {exclude}
""")


@pytest.mark.parametrize("path,patterns,expected", [
    ("tracker/etc/tracker.toml", ("tracker/etc/**",), True),
    ("tracker/etc", ("tracker/etc/**",), False),
    ("tracker/log/x.log", ("tracker/etc/**",), False),
    ("a/b/c.pem", ("**/*.pem",), True),
    ("c.pem", ("**/*.pem",), True),
    ("caddy/etc/Caddyfile", ("caddy",), True),
    ("caddy2/x", ("caddy",), False),
    ("x/y", ("**",), True),
    ("tracker/etc/a.toml", ("tracker/*/a.toml",), True),
    ("tracker/etc/sub/a.toml", ("tracker/*/a.toml",), False),
])
def test_globs_match_paths_and_their_parent_directories(path, patterns, expected):
    assert matches(path, patterns) is expected


def test_include_exclude_select_the_configured_files(tmp_path, storage):
    (storage / "tracker/etc/secret.key").write_text("k")
    Cli(files_config(tmp_path, storage, "tracker/etc/** caddy/**", "**/*.key"))("run", check=True)
    names = set(archive_members(tmp_path / "backups"))
    assert "tracker/etc/tracker.toml" in names and "caddy/etc/Caddyfile" in names
    assert "tracker/etc/secret.key" not in names
    assert not any(n.startswith("tracker/log") or n.startswith("tracker/lib") for n in names)


def test_live_sqlite_files_are_left_out_with_a_log_line(tmp_path, storage):
    other = create_tracker_db(storage / "tracker/etc/other.db", rows=10)
    Path(f"{other}-wal").write_bytes(b"\x37\x7f\x06\x82" + b"\0" * 28)
    (storage / "tracker/etc/notes.db").write_text("plain text, not sqlite")
    proc = Cli(files_config(tmp_path, storage))("run", check=True)
    names = set(archive_members(tmp_path / "backups"))
    assert "tracker/lib/database/tracker.db" not in names
    assert "tracker/etc/other.db" not in names and "tracker/etc/other.db-wal" not in names
    assert "tracker/etc/notes.db" in names
    assert "leaving out tracker/etc/other.db: a SQLite database" in proc.stderr
    assert "leaving out tracker/etc/other.db-wal: side file of SQLite database" in proc.stderr


def test_mysql_data_directory_is_left_out(tmp_path, storage):
    datadir = storage / "mysql/data"
    (datadir / "torrust_tracker").mkdir(parents=True)
    (datadir / "ibdata1").write_bytes(b"\0" * 1024)
    (datadir / "torrust_tracker/torrents.ibd").write_bytes(b"\0" * 1024)
    proc = Cli(files_config(tmp_path, storage))("run", check=True)
    names = set(archive_members(tmp_path / "backups"))
    assert not any(n.startswith("mysql/data") for n in names)
    assert "leaving out mysql/data: live MySQL/MariaDB data directory" in proc.stderr


def test_modes_owners_mtimes_and_symlinks_are_kept_and_links_not_followed(tmp_path, storage):
    cert = storage / "caddy/etc/tls.key"
    cert.write_text("PRIVATE")
    cert.chmod(0o640)
    os.chown(cert, NOBODY, NOBODY)
    os.utime(cert, (1_600_000_000, 1_600_000_000))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big.bin").write_bytes(b"x" * 1000)
    (storage / "caddy/etc/current.key").symlink_to("tls.key")
    (storage / "caddy/linked-dir").symlink_to(outside)
    Cli(files_config(tmp_path, storage))("run", check=True)
    members = archive_members(tmp_path / "backups")
    key = members["caddy/etc/tls.key"]
    assert (key.mode, key.uid, key.gid, int(key.mtime)) == (0o640, NOBODY, NOBODY, 1_600_000_000)
    assert members["caddy/etc/current.key"].issym()
    assert members["caddy/etc/current.key"].linkname == "tls.key"
    assert members["caddy/linked-dir"].issym()
    assert "caddy/linked-dir/big.bin" not in members


def test_unreadable_file_fails_the_run_unless_excluded(tmp_path, world_tmp):
    root = world_tmp / "storage"
    (root / "etc").mkdir(parents=True)
    (root / "etc/ok.toml").write_text("ok")
    secret = root / "etc/secret.pem"
    secret.write_text("only root")
    secret.chmod(0o600)
    backups = world_tmp / "backups"
    backups.mkdir()
    os.chown(backups, NOBODY, NOBODY)
    conf = write_config(world_tmp / "tb.conf", f"[backup]\npath = {backups}\n[files]\nroot = {root}\n")
    conf.chmod(0o644)

    def run_as_nobody(config: Path):
        import subprocess
        import sys

        from conftest import agent_env

        return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                               sys.executable, "-m", "tracker_backup", "--config", str(config), "run"],
                              capture_output=True, text=True, env=agent_env(), cwd="/")

    proc = run_as_nobody(conf)
    assert proc.returncode == 1, proc.stderr
    assert f"cannot read {secret}: Permission denied" in proc.stderr
    assert "[files] exclude" in proc.stderr
    assert not [p for p in backups.iterdir() if p.name[:1].isdigit()]
    conf.write_text(conf.read_text() + "exclude = etc/secret.pem\n")
    proc = run_as_nobody(conf)
    assert proc.returncode == 0, proc.stderr


def test_file_changing_while_read_is_read_again(tmp_path, storage):
    big = storage / "tracker/etc/growing.json"
    big.write_bytes(b"a" * 3_000_000)
    conf = files_config(tmp_path, storage, "tracker/etc/**", extra="rate_limit = 2\ncompression = none")
    cli = Cli(conf)
    proc = cli.popen("run")

    def rewrite():
        # Rewrite once the run is reading (its staging directory exists), not after a fixed
        # delay: the CLI's start-up alone can take longer than that on a loaded host.
        backups = tmp_path / "backups"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                backups.is_dir() and any(p.name.startswith(".staging-") for p in backups.iterdir())):
            time.sleep(0.01)
        time.sleep(0.2)  # the 3 MB file takes ~1.5 s to read at 2 MB/s
        big.write_bytes(b"b" * 3_000_000)

    t = threading.Thread(target=rewrite)
    t.start()
    out, err = proc.communicate(timeout=60)
    t.join()
    assert proc.returncode == 0, err
    assert "growing.json changed while being read; reading it again" in err
    snap = sorted(p for p in (tmp_path / "backups").iterdir() if p.name[:1].isdigit())[-1]
    with tarfile.open(snap / "files.tar") as tar:
        data = tar.extractfile("tracker/etc/growing.json").read()
    assert data == b"b" * 3_000_000


def test_archive_extracts_with_plain_tar(tmp_path, storage):
    Cli(files_config(tmp_path, storage))("run", check=True)
    import subprocess

    snap = sorted(p for p in (tmp_path / "backups").iterdir() if p.name[:1].isdigit())[-1]
    out = tmp_path / "extract"
    out.mkdir()
    subprocess.run(["tar", "--zstd", "-xpf", str(snap / "files.tar.zst"), "-C", str(out)], check=True)
    assert (out / "tracker/etc/tracker.toml").read_text() == "[core]\nlisted = false\n"
    shutil.rmtree(out)
