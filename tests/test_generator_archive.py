"""The generator and the archive unit: `[sqlite] continuous = yes` wants it, `enabled = no` pauses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_config
from tracker_backup import generator
from tracker_backup.config import load_config

UNITS = Path(__file__).resolve().parent.parent / "units"


@pytest.fixture
def units_here(monkeypatch):
    monkeypatch.setattr(generator, "find_unit",
                        lambda name: str(UNITS / name) if (UNITS / name).exists() else None)


def _plan(tmp_path, continuous: str, enabled: str = "yes"):
    cfg = write_config(tmp_path / "tb.conf", f"""
[backup]
path = {tmp_path}/backups
[schedule]
enabled = {enabled}
[sqlite]
database = /opt/torrust/storage/tracker/lib/database/tracker.db
continuous = {continuous}
""")
    return generator.plan_for(load_config(cfg))


def test_continuous_yes_links_the_archive_unit_with_its_writable_paths(tmp_path, units_here):
    out = tmp_path / "gen"
    plan = _plan(tmp_path, "yes")
    assert plan.archive
    generator.write_plan(plan, out, record=tmp_path / "applied")
    link = out / "multi-user.target.wants" / generator.ARCHIVE_UNIT
    assert link.is_symlink() and Path(link.readlink()).name == generator.ARCHIVE_UNIT
    dropin = (out / f"{generator.ARCHIVE_UNIT}.d" / generator.DROPIN).read_text()
    assert f'ReadWritePaths="-{tmp_path}/backups"' in dropin
    assert 'ReadWritePaths="-/opt/torrust/storage/tracker/lib/database"' in dropin
    assert "PrivateNetwork=yes" in dropin


@pytest.mark.parametrize(("continuous", "enabled"), [("no", "yes"), ("yes", "no")])
def test_no_archive_unit_link_when_continuous_is_off_or_the_schedule_disabled(tmp_path, units_here,
                                                                            continuous, enabled):
    out = tmp_path / "gen"
    plan = _plan(tmp_path, continuous, enabled)
    assert not plan.archive
    generator.write_plan(plan, out, record=tmp_path / "applied")
    assert not (out / "multi-user.target.wants" / generator.ARCHIVE_UNIT).exists()


def test_turning_continuous_on_marks_the_change_pending_for_apply(tmp_path, units_here):
    record = tmp_path / "applied"
    generator.write_plan(_plan(tmp_path, "no"), tmp_path / "gen1", record=record)
    assert not (tmp_path / "gen1" / generator.PENDING_FLAG).exists()
    generator.write_plan(_plan(tmp_path, "yes"), tmp_path / "gen2", record=record)
    assert (tmp_path / "gen2" / generator.PENDING_FLAG).exists()
