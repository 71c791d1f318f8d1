"""The durability order of docs/format.md, observed with strace on the real agent.

A power loss cannot be simulated here without a device-mapper target, so this
proves the property it rests on instead: every file and directory of a
snapshot is fsynced *before* the rename that publishes it, and the backup path
is fsynced after that rename, before the run reports success.
"""

from __future__ import annotations

import re

import pytest

from faults.harness import make_host

CALL = re.compile(r'^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)')
FD_PATH = re.compile(r'^\d+<(.*)>')


def _trace(host, tmp_path) -> list[tuple[str, list[str]]]:
    log = tmp_path / "strace.log"
    proc = host.start("run", prefix=["strace", "-f", "-qq", "-y", "-o", str(log), "-e",
                                     "trace=fsync,fdatasync,rename,renameat,renameat2"])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    calls = []
    for line in log.read_text().splitlines():
        m = CALL.match(line)
        if not m or m.group(3) != "0":
            continue
        name, args = m.group(1), m.group(2)
        if name in ("fsync", "fdatasync"):
            calls.append(("sync", [FD_PATH.match(args).group(1)]))
        else:
            calls.append(("rename", re.findall(r'"([^"]*)"', args)))
    return calls


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_every_file_and_directory_is_fsynced_before_the_publishing_rename(tmp_path, compression):
    host = make_host(tmp_path, backup=f"compression = {compression}")
    calls = _trace(host, tmp_path)
    snap = host.snapshots()[-1]
    staging = str(host.backups / f".staging-{snap.name}")
    publish = next(i for i, (kind, args) in enumerate(calls)
                   if kind == "rename" and args == [staging, str(snap)])
    before = calls[:publish]
    synced = {args[0] for kind, args in before if kind == "sync"}
    # A file fsynced under a temporary name and then renamed inside staging counts.
    for kind, args in before:
        if kind == "rename" and args[0] in synced:
            synced.add(args[1])
    for path in snap.rglob("*"):
        inside = f"{staging}/{path.relative_to(snap).as_posix()}"
        assert inside in synced, f"{inside} was not fsynced before the snapshot was published"
    assert staging in synced, "the staging directory itself was not fsynced before the rename"
    after = [args[0] for kind, args in calls[publish + 1:] if kind == "sync"]
    assert str(host.backups) in after, "the backup path was not fsynced after the rename"
    # ... and before the run recorded its success.
    status = next(i for i, (kind, args) in enumerate(calls)
                  if kind == "rename" and args[1].endswith("/.state/status.json"))
    assert status > publish
    assert str(host.backups) in [args[0] for kind, args in calls[publish + 1:status]
                                 if kind == "sync"]


def test_retention_hides_a_snapshot_durably_before_deleting_its_files(tmp_path):
    host = make_host(tmp_path, retention="keep_last = 1\nkeep_days = 0")
    old = host.cli("run", check=True).stdout.strip()
    calls = _trace(host, tmp_path)
    hide = next(i for i, (kind, args) in enumerate(calls)
                if kind == "rename" and args == [str(host.backups / old),
                                                 str(host.backups / f".deleting-{old}")])
    assert calls[hide + 1] == ("sync", [str(host.backups)]), calls[hide:hide + 2]
