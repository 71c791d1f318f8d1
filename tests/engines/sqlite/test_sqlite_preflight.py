"""check-config's advice on the snapshot layout for a large SQLite database."""

from __future__ import annotations

import os

from tracker_backup.engines.sqlite.preflight import PAGES_ADVICE_FROM, layout_advice


def sparse(path, size: int):
    with open(path, "wb") as fh:
        os.truncate(fh.fileno(), size)
    return path


def test_a_large_database_kept_as_full_copies_is_pointed_at_the_page_layout(tmp_path):
    db = sparse(tmp_path / "tracker.db", 17 * 10**9)  # the deployer's 17 GB, sparse
    advice = layout_advice(db, "full", 7)
    assert advice is not None
    assert f"database = {db}: 17.0 GB" in advice
    assert "layout = full, keep_last = 7" in advice and "layout = pages" in advice


def test_no_advice_below_the_size_with_pages_already_or_with_a_single_copy(tmp_path):
    small = sparse(tmp_path / "small.db", PAGES_ADVICE_FROM - 4096)
    big = sparse(tmp_path / "big.db", PAGES_ADVICE_FROM)
    assert layout_advice(small, "full", 7) is None
    assert layout_advice(big, "pages", 7) is None
    assert layout_advice(big, "full", 1) is None
    assert layout_advice(tmp_path / "missing.db", "full", 7) is None
    assert layout_advice(big, "full", 2) is not None
