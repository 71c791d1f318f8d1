"""A single flipped bit in a stored snapshot: `verify` finds it and names the file."""

from __future__ import annotations

import json

import pytest

from faults.harness import make_host


def _flip(path, offset: int | None = None, bit: int = 0x04) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= bit
    path.write_bytes(bytes(data))


def _two_snapshots(tmp_path, backup: str = ""):
    host = make_host(tmp_path, backup=backup)
    first = host.cli("run", check=True).stdout.strip()
    second = host.cli("run", check=True).stdout.strip()
    return host, first, second


@pytest.mark.parametrize("artifact,compression", [
    ("sqlite/tracker.db.zst", "zstd"),
    ("files.tar.zst", "zstd"),
    ("sqlite/tracker.db", "none"),
    ("files.tar", "none"),
])
def test_bit_flip_in_an_artifact_is_found_and_named_by_verify(tmp_path, artifact, compression):
    host, first, second = _two_snapshots(tmp_path, f"compression = {compression}")
    _flip(host.backups / first / artifact)
    proc = host.cli("verify", "--all", "--json")
    assert proc.returncode == 1, proc.stderr
    results = {r["id"]: r for r in json.loads(proc.stdout)}
    assert results[second]["result"] == "ok"
    assert results[first]["result"] == "failed"
    assert any(p.startswith(f"{artifact}: sha256") and "damaged" in p
               for p in results[first]["problems"]), results[first]
    text = host.cli("verify", first)
    assert text.returncode == 1 and artifact in text.stdout and first in text.stdout
    # The finding is remembered: list shows it, `latest` and retention skip it.
    row = next(r for r in json.loads(host.cli("list", "--json").stdout) if r["id"] == first)
    assert row["good"] is False
    # Restoring the damaged snapshot is refused before anything is written.
    target = tmp_path / "restored.db"
    restore = host.cli("restore", first, "--kind", "sqlite", "--to", str(target))
    if artifact.startswith("sqlite/"):
        assert restore.returncode != 0 and artifact in restore.stderr, restore.stderr
        assert not target.exists()


@pytest.mark.parametrize("field", ["sha256", "bytes", "row count"])
def test_bit_flip_in_a_manifest_value_that_matters_is_found(tmp_path, field):
    host, first, _second = _two_snapshots(tmp_path)
    path = host.backups / first / "MANIFEST.json"
    text = path.read_text()
    manifest = json.loads(text)
    art = next(a for a in manifest["artifacts"] if a["source"] == "sqlite")
    if field == "sha256":
        old = f'"sha256": "{art["sha256"]}"'
    elif field == "bytes":
        old = f'"bytes": {art["bytes"]},'
    else:
        old = f'"torrents": {manifest["sources"]["sqlite"]["row_counts"]["torrents"]}'
    at = text.index(old) + len(old) - 3  # a digit inside the value
    _flip(path, offset=at, bit=0x01)  # '0'↔'1', '2'↔'3' ...: still valid JSON
    json.loads(path.read_text())
    proc = host.cli("verify", first)
    assert proc.returncode == 1, proc.stdout
    assert "sqlite" in proc.stdout and "FAILED" in proc.stdout, proc.stdout


def test_bit_flip_that_breaks_the_manifest_json_marks_the_snapshot_damaged(tmp_path):
    host, first, second = _two_snapshots(tmp_path)
    path = host.backups / first / "MANIFEST.json"
    _flip(path, offset=path.read_text().index("{"), bit=0x01)  # '{' → 'z'
    proc = host.cli("verify", "--all")
    assert proc.returncode == 1
    assert "MANIFEST.json is unreadable" in proc.stdout, proc.stdout
    listed = {r["id"]: r for r in json.loads(host.cli("list", "--json").stdout)}
    assert listed[first]["good"] is False and listed[second]["good"] is True
