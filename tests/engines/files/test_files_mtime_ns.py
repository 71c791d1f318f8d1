"""The files archive keeps mtimes to the nanosecond, so `tar -d` agrees (issue 15, item 6)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

MTIME_NS = 1_700_000_000_123_456_789  # not representable in a float's ~0.1 us


def latest(backups: Path) -> Path:
    return sorted(p for p in backups.iterdir() if not p.name.startswith("."))[-1]


def tar_diff(archive: Path, directory: Path) -> subprocess.CompletedProcess:
    """The runbook's check, verbatim: zstd -dc ARCHIVE | tar -df - -C DIR."""
    return subprocess.run(f'zstd -dc "{archive}" | tar -df - -C "{directory}"', shell=True,
                          capture_output=True, text=True, timeout=60)


def test_tar_d_finds_no_difference_right_after_the_backup(cli, storage, tmp_path):
    for rel in ("tracker/etc/tracker.toml", "caddy/etc/Caddyfile"):
        os.utime(storage / rel, ns=(MTIME_NS, MTIME_NS))
    cli("run", check=True)
    proc = tar_diff(latest(tmp_path / "backups") / "files.tar.zst", storage)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


def test_restored_files_get_the_exact_mtime_and_pass_tar_d(cli, storage, tmp_path):
    toml = storage / "tracker/etc/tracker.toml"
    os.utime(toml, ns=(MTIME_NS, MTIME_NS))
    cli("run", check=True)
    target = tmp_path / "restored"
    cli("restore", "--kind", "files", "--to", str(target), check=True)
    assert (target / "tracker/etc/tracker.toml").stat().st_mtime_ns == MTIME_NS
    proc = tar_diff(latest(tmp_path / "backups") / "files.tar.zst", target)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr
