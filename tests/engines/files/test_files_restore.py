"""Files restore: round trip with modes, owners and links; malicious archives refused with
nothing written outside (or inside) the target; symlinks in the target never followed."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from support.restore_kit import forge_artifact, latest_snapshot, make_tar, member, tree
from support.tracker_db import create_tracker_db
from tracker_backup.engines.files.restore import UnsafeArchive, _Writer
from tracker_backup.errors import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE

NOBODY = 65534


@pytest.fixture
def rich_storage(storage: Path) -> Path:
    """Storage with a non-root owner, odd modes, a symlink and a hard link."""
    etc = storage / "tracker/etc"
    os.chown(etc / "tracker.toml", NOBODY, NOBODY)
    os.chmod(etc / "tracker.toml", 0o640)
    (storage / "caddy/data/certs").mkdir(parents=True)
    key = storage / "caddy/data/certs/site.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    os.chmod(key, 0o600)
    os.chmod(storage / "caddy/data/certs", 0o750)
    os.chown(storage / "caddy/data/certs", NOBODY, NOBODY)
    os.symlink("certs/site.key", storage / "caddy/data/current.key")
    os.link(storage / "caddy/etc/Caddyfile", storage / "caddy/etc/Caddyfile.hardlink")
    return storage


def test_round_trip_under_a_live_writer_keeps_content_modes_owners_and_links(
        cli, tmp_path, rich_storage, start_writer):
    writer = start_writer(rich_storage / "tracker/lib/database/tracker.db", rate=200)
    cli("run", check=True)
    writer.stop()
    target = tmp_path / "restored"
    proc = cli("restore", "--kind", "files", "--to", str(target), check=True)
    assert "files -> " in proc.stdout
    expected = {k: v for k, v in tree(rich_storage).items()
                if not k.startswith(("tracker/log/", "tracker/lib/database/"))}
    got = tree(target)
    # The database directory is archived empty (its SQLite files belong to [sqlite]).
    assert set(got) == set(expected)
    for rel, entry in expected.items():
        if rel in ("tracker/lib/database", "tracker/log"):  # mtime changes with its contents
            assert got[rel][:4] == entry[:4]
            continue
        assert got[rel] == entry, rel
    assert got["tracker/etc/tracker.toml"][1:4] == (0o640, NOBODY, NOBODY)
    assert got["caddy/data/current.key"] == ("link", 0o777, 0, 0, "certs/site.key")
    assert os.stat(target / "caddy/etc/Caddyfile").st_ino == \
        os.stat(target / "caddy/etc/Caddyfile.hardlink").st_ino


def test_in_place_restore_needs_force_to_replace_files_that_differ(cli, storage):
    cli("run", check=True)
    toml = storage / "tracker/etc/tracker.toml"
    original = toml.read_text()
    toml.write_text("damaged by hand\n")
    dry = cli("restore", "--kind", "files", "--dry-run", check=True)
    assert f"will replace: {toml} (differs)" in dry.stdout
    assert toml.read_text() == "damaged by hand\n"
    refused = cli("restore", "--kind", "files")
    assert refused.returncode == EXIT_USAGE and "--force" in refused.stderr
    assert toml.read_text() == "damaged by hand\n"
    cli("restore", "--kind", "files", "--force", check=True)
    assert toml.read_text() == original


def _forge_and_restore(cli, tmp_path: Path, entries) -> tuple:
    cli("run", check=True)
    snap = latest_snapshot(tmp_path / "backups")
    forge_artifact(snap, "files.tar.zst", make_tar(entries), members=len(entries))
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    target = tmp_path / "target"
    target.mkdir(exist_ok=True)
    proc = cli("restore", "--kind", "files", "--to", str(target))
    return proc, target, outside


@pytest.mark.parametrize("entries, why", [
    ([member("ok.txt"), member("../outside/escaped")], "contains '..'"),
    ([member("ok.txt"), member("/OUTSIDE/abs")], "absolute path"),
    ([member("ok.txt"), member("evil", tarfile.SYMTYPE, linkname="../outside"),
      member("evil/pwned")], "points outside"),
    ([member("d", tarfile.DIRTYPE, mode=0o755), member("d/in", tarfile.SYMTYPE, linkname="."),
      member("d/in/pwned")], "lies beneath the link"),
    ([member("evil", tarfile.SYMTYPE, linkname="/OUTSIDE")], "absolute path"),
    ([member("sub", tarfile.DIRTYPE, mode=0o755),
      member("sub/up", tarfile.SYMTYPE, linkname="../../outside")], "points outside"),
    ([member("ok.txt"), member("null", tarfile.CHRTYPE)], "device node"),
    ([member("ok.txt"), member("disk", tarfile.BLKTYPE)], "device node"),
    ([member("ok.txt"), member("passwd", tarfile.LNKTYPE, linkname="/OUTSIDE/victim")],
     "absolute path"),
    ([member("ok.txt"), member("fifo", tarfile.FIFOTYPE)], "FIFO"),
], ids=["dotdot", "absolute", "symlink-escape", "through-link", "absolute-symlink", "relative-symlink-escape",
        "char-device", "block-device", "hardlink-outside", "fifo"])
def test_malicious_archive_is_refused_and_nothing_is_written(cli, tmp_path, entries, why):
    outside = tmp_path / "outside"
    outside.mkdir()
    for info, _data in entries:
        info.name = info.name.replace("/OUTSIDE", str(outside))
        info.linkname = info.linkname.replace("/OUTSIDE", str(outside))
    proc, target, outside = _forge_and_restore(cli, tmp_path, entries)
    assert proc.returncode == EXIT_RUN_FAILED
    assert why in proc.stderr and "refused" in proc.stderr
    assert list(outside.iterdir()) == []
    assert list(target.iterdir()) == [], "checks run before anything is written"
    assert not (tmp_path / "escaped").exists()


def test_a_symlink_already_in_the_target_is_never_followed(cli, tmp_path, storage):
    cli("run", check=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("keep me\n")
    target = tmp_path / "target"
    (target / "caddy/etc").mkdir(parents=True)
    (target / "tracker").mkdir()
    os.symlink(outside, target / "tracker/etc")  # a directory the archive writes into
    os.symlink(victim, target / "caddy/etc/Caddyfile")  # a file the archive replaces
    proc = cli("restore", "--kind", "files", "--to", str(target), "--force")
    assert proc.returncode == EXIT_RUN_FAILED
    assert "is a symlink" in proc.stderr and "refused" in proc.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    os.unlink(target / "tracker/etc")
    cli("restore", "--kind", "files", "--to", str(target), "--force", check=True)
    assert victim.read_text() == "keep me\n"
    assert not (target / "caddy/etc/Caddyfile").is_symlink()
    assert (target / "caddy/etc/Caddyfile").read_text() == "tracker.example.org {}\n"


def test_writer_refuses_a_symlink_planted_after_the_checks(tmp_path):
    """The second pass walks with O_NOFOLLOW: a link swapped in between passes is refused."""
    target, outside = tmp_path / "target", tmp_path / "outside"
    outside.mkdir()
    writer = _Writer(target, keep_owner=True)
    try:
        os.symlink(outside, target / "etc")
        with pytest.raises(UnsafeArchive, match="symlink"):
            writer.open_dir(("etc", "deeper"))
    finally:
        writer.close()
    assert list(outside.iterdir()) == []


def test_restore_into_a_new_directory_creates_it(cli, tmp_path, storage):
    create_tracker_db(storage / "tracker/lib/database/other.db", rows=10)  # left out, not restored
    cli("run", check=True)
    target = tmp_path / "new" / "storage"
    assert cli("restore", "--kind", "files", "--to", str(target)).returncode == EXIT_OK
    for d in (target.parent, target):  # 0755 although the agent runs with umask 077
        assert d.stat().st_mode & 0o777 == 0o755, d
    assert (target / "tracker/etc/tracker.toml").read_text() == "[core]\nlisted = false\n"
    assert not (target / "tracker/lib/database/other.db").exists()


def test_in_place_restore_of_an_unchanged_storage_replaces_nothing_and_needs_no_force(
        cli, rich_storage):
    cli("run", check=True)
    before = tree(rich_storage)
    proc = cli("restore", "--kind", "files", check=True)
    assert "replaces nothing" in proc.stdout and " 0 replaced" in proc.stdout
    after = tree(rich_storage)
    assert {k: v for k, v in after.items() if v[0] != "dir"} == \
        {k: v for k, v in before.items() if v[0] != "dir"}
