"""Valid JSON of the wrong shape in a manifest or in .state: damaged, reported, never a crash.

A hand-edited manifest, another tool, or damage can leave JSON that parses but
has the wrong types. One such file must never stop backups (a crash of `prune`
would stop retention for good) nor hide the other snapshots.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from faults.harness import assert_published_are_complete, make_host
from tracker_backup.commands.list import list_snapshots
from tracker_backup.commands.prune import prune
from tracker_backup.commands.status import status
from tracker_backup.config import load_config
from tracker_backup.store import Store

KEYS = ["last_run", "last_success", "finished", "result", "snapshot", "duration_sec", "error",
        "started", "kind", "at", "drill", "id", "sequence", "format", "artifacts", "sources",
        "bytes", "path", "sha256", "source", "20260101T000000Z"]
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner,
                                                                max_size=5),
    max_leaves=14)


@settings(max_examples=200, deadline=None, database=None)
@given(status_json=ANY_JSON, checks_json=ANY_JSON, manifest_json=ANY_JSON)
def test_any_json_in_manifest_and_state_never_crashes_list_status_or_prune(
        status_json, checks_json, manifest_json):
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        snap = base / "b/20260101T000000Z"
        snap.mkdir(parents=True)
        (base / "b/.state").mkdir()
        (base / "b/.state/status.json").write_text(json.dumps(status_json))
        (base / "b/.state/checks.json").write_text(json.dumps(checks_json))
        (snap / "MANIFEST.json").write_text(json.dumps(manifest_json))
        (base / "tb.conf").write_text(f"[backup]\npath = {base / 'b'}\n[files]\nroot = /tmp\n")
        config = load_config(base / "tb.conf")
        for as_json in (False, True):
            status(config, as_json=as_json, out=io.StringIO())
            list_snapshots(config, as_json=as_json, out=io.StringIO())
        decisions = prune(config, dry_run=True, out=io.StringIO())
        (found,) = Store(base / "b").snapshots()
        if not found.good:  # a damaged snapshot is always kept for the operator
            assert all(d.keep for d in decisions)


def test_wrong_shaped_manifest_and_state_do_not_stop_backups_or_retention(tmp_path):
    host = make_host(tmp_path, retention="keep_last = 1\nkeep_days = 0")
    bad = host.cli("run", "--no-prune", check=True).stdout.strip()
    good = host.cli("run", "--no-prune", check=True).stdout.strip()
    manifest = json.loads((host.backups / bad / "MANIFEST.json").read_text())
    manifest["artifacts"] = {"not": "a list"}
    (host.backups / bad / "MANIFEST.json").write_text(json.dumps(manifest))
    (host.backups / ".state/status.json").write_text('{"last_success": 7, "last_run": []}')
    (host.backups / ".state/checks.json").write_text(f'{{"{good}": ["x"]}}')
    for command in (("status",), ("list",), ("prune", "--dry-run")):
        proc = host.cli(*command)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (command, proc.stderr)
    listed = {r["id"]: r for r in json.loads(host.cli("list", "--json").stdout)}
    assert listed[bad]["good"] is False and "malformed" in listed[bad]["problem"]
    verify = host.cli("verify", bad)
    assert verify.returncode == 1 and "MANIFEST.json is malformed" in verify.stdout
    new = host.cli("run")  # backup and retention carry on
    assert new.returncode == 0, new.stderr
    ids = {p.name for p in host.snapshots()}
    assert ids == {bad, new.stdout.strip()}, ids  # the damaged one is left for the operator
    (host.backups / bad / "MANIFEST.json").unlink()
    (host.backups / bad).rename(host.backups / f".deleting-{bad}")  # operator removes it
    assert_published_are_complete(host)
