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


def test_each_release_and_the_build_tree_have_their_own_key_and_directory():
    paths = {nspawn.tree_path(r) for r in nspawn.RELEASES} | \
        {nspawn.tree_path(r, build=True) for r in nspawn.RELEASES}
    assert len(paths) == 2 * len(nspawn.RELEASES)
    assert nspawn.tree_path("bookworm") == nspawn.tree_path()  # the default stays Debian 12
    assert nspawn.tree_path("trixie").name.startswith("debian13-")
    assert nspawn.tree_path("trixie", build=True).name.startswith("debian13-build-")


def test_unknown_release_is_refused_by_name():
    try:
        nspawn.tree_path("sid")
    except ValueError as exc:
        assert "sid" in str(exc) and "trixie" in str(exc)
    else:
        raise AssertionError("tree_path('sid') must fail")


def test_apt_sources_for_another_release_rename_the_suites_only():
    host = nspawn.host_release()
    other = next(r for r in nspawn.RELEASES if r != host)
    for (name, mine), (name2, theirs) in zip(nspawn.apt_sources(host), nspawn.apt_sources(other),
                                              strict=True):
        assert name == name2
        assert host not in theirs and other in theirs
        assert theirs == mine.replace(host, other)


def test_stale_cleanup_removes_only_this_modules_trees(tmp_path, monkeypatch):
    monkeypatch.setattr(nspawn, "CACHE_DIR", tmp_path)
    keep = tmp_path / "debian13-0123456789abcdef"
    for name in ("debian13-fedcba9876543210", "debian13-build-fedcba9876543210", "debian13-notes",
                 "mariadb-rootfs-fedcba9876543210.tar.zst"):
        (tmp_path / name).mkdir()
    keep.mkdir()
    nspawn._remove_older_trees("debian13", keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "debian13-0123456789abcdef", "debian13-build-fedcba9876543210", "debian13-notes",
        "mariadb-rootfs-fedcba9876543210.tar.zst"]
