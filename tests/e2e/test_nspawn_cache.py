"""The cached Debian tree is keyed by its package list: rebuilt only when that list changes."""

from __future__ import annotations

from e2e import nspawn


def test_tree_key_changes_with_the_package_list_only(monkeypatch):
    key = nspawn.tree_key()
    assert nspawn.tree_key() == key
    monkeypatch.setattr(nspawn, "TREE_PACKAGES", tuple(reversed(nspawn.TREE_PACKAGES)))
    assert nspawn.tree_key() == key  # order does not matter
    monkeypatch.setattr(nspawn, "TREE_PACKAGES", (*nspawn.TREE_PACKAGES, "less"))
    assert nspawn.tree_key() != key
    assert nspawn.tree_path().name == f"debian12-{nspawn.tree_key()}"


def test_ensure_tree_reuses_a_complete_cached_tree_without_building(tmp_path, monkeypatch):
    monkeypatch.setattr(nspawn, "CACHE_DIR", tmp_path)
    root = nspawn.tree_path()
    root.mkdir()
    (root / ".complete").write_text("done\n")

    def no_build(*args, **kwargs):
        raise AssertionError("debootstrap must not run for a cached tree")

    monkeypatch.setattr(nspawn.subprocess, "run", no_build)
    assert nspawn.ensure_tree() == root


def test_mirror_is_the_hosts_debian_mirror():
    assert nspawn.debian_mirror().startswith(("http://", "https://"))
