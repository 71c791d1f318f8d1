"""Retention under a clock that jumps (libfaketime) and among damaged snapshots."""

from __future__ import annotations

import json
import shutil

from faults.harness import assert_published_are_complete, make_host


def _run_at(host, offset: str | None, *args: str) -> str:
    """One run with the system clock shifted by `offset` (libfaketime, e.g. "-10d")."""
    prefix = ["faketime", "-f", offset] if offset else None
    proc = host.start("run", *args, prefix=prefix)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out.strip()


def _ids(host) -> set[str]:
    return {p.name for p in host.snapshots()}


def _manifest(host, snap_id: str) -> dict:
    return json.loads((host.backups / snap_id / "MANIFEST.json").read_text())


def test_clock_going_backwards_never_lets_retention_delete_the_newest_snapshots(tmp_path):
    assert shutil.which("faketime"), "faketime is required (scripts/test-packages.txt)"
    host = make_host(tmp_path, retention="keep_last = 2\nkeep_days = 0")
    a = _run_at(host, None, "--no-prune")
    b = _run_at(host, None, "--no-prune")
    a_started = _manifest(host, a)["started"]
    c = _run_at(host, "-10d")  # the clock went back ten days, then retention ran
    assert _manifest(host, c)["started"] < a_started
    assert _ids(host) == {b, c}, "retention must keep the two newest runs, whatever their dates"
    d = _run_at(host, None)  # the clock is right again
    assert _ids(host) == {c, d}
    assert [r["id"] for r in json.loads(host.cli("list", "--json").stdout)] == [d, c]
    assert_published_are_complete(host)


def test_clock_jumping_forward_then_back_keeps_the_real_newest_as_latest(tmp_path):
    host = make_host(tmp_path, retention="keep_last = 2\nkeep_days = 7")
    _run_at(host, None, "--no-prune")
    future = _run_at(host, "+365d", "--no-prune")  # a year ahead: its ID sorts last by name
    now1 = _run_at(host, None)
    now2 = _run_at(host, None)
    assert future > now2  # by name it looks newest; by sequence it is not
    assert now1 in _ids(host) and now2 in _ids(host)
    assert future in _ids(host)  # dated in the future: kept (keep_days), never counted as newest
    listed = [r["id"] for r in json.loads(host.cli("list", "--json").stdout)]
    assert listed[:2] == [now2, now1]
    verify = host.cli("verify", "latest", "--json")
    assert json.loads(verify.stdout)[0]["id"] == now2
    assert_published_are_complete(host)


def test_damaged_snapshots_never_count_toward_keep_last_and_are_left_for_the_operator(tmp_path):
    host = make_host(tmp_path, retention="keep_last = 2\nkeep_days = 0")
    ids = [host.cli("run", "--no-prune", check=True).stdout.strip() for _ in range(6)]
    s1, s2, s3, s4, s5, s6 = ids
    (host.backups / s6 / "MANIFEST.json").unlink()  # manifest lost
    manifest5 = host.backups / s5 / "MANIFEST.json"
    manifest5.write_text(manifest5.read_text()[:100])  # manifest torn
    art = host.backups / s4 / "sqlite/tracker.db.zst"
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0x10
    art.write_bytes(bytes(data))  # a bit flip the last verify found
    assert host.cli("verify", s4).returncode == 1
    prune = host.cli("prune")
    assert prune.returncode == 0, prune.stderr
    assert _ids(host) == {s2, s3, s4, s5, s6}, prune.stdout
    for damaged in (s4, s5, s6):
        assert any(line.startswith("keep") and damaged in line and "damaged" in line
                   for line in prune.stdout.splitlines()), prune.stdout
    s7 = host.cli("run", check=True).stdout.strip()  # run + retention again
    assert _ids(host) == {s3, s4, s5, s6, s7}
    # `latest` means the newest good snapshot, never a damaged one.
    assert json.loads(host.cli("verify", "latest", "--json").stdout)[0]["id"] == s7
    assert s1 not in _ids(host)
