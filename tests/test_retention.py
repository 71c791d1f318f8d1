"""Retention as a pure function: keep_last, keep_days, GFS buckets, damaged and future snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tracker_backup.config import RetentionConfig
from tracker_backup.retention import Candidate, plan

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def daily(n: int, damaged: set[int] = frozenset()) -> list[Candidate]:
    """n daily snapshots, the newest (sequence n) taken today."""
    return [Candidate(f"s{seq:03d}", NOW - timedelta(days=n - seq), seq, seq not in damaged)
            for seq in range(1, n + 1)]


def kept(decisions) -> list[str]:
    return [d.id for d in decisions if d.keep]


def test_keep_days_keeps_younger_snapshots_and_deletes_older():
    decisions = plan(daily(10), RetentionConfig(keep_days=7, keep_last=1), NOW)
    assert kept(decisions) == [f"s{seq:03d}" for seq in range(10, 3, -1)]
    assert [d.id for d in decisions if not d.keep] == ["s003", "s002", "s001"]
    assert decisions[-1].reasons == ["matched no keep rule"]


def test_keep_last_keeps_newest_even_when_all_are_old():
    old = [Candidate(f"s{i}", NOW - timedelta(days=100 + i), 10 - i, True) for i in range(5)]
    decisions = plan(old, RetentionConfig(keep_days=7, keep_last=3), NOW)
    assert kept(decisions) == ["s0", "s1", "s2"]
    assert decisions[0].reasons == ["keep_last 1/3"]


def test_damaged_snapshots_never_count_toward_keep_last_and_are_not_deleted():
    snaps = [Candidate(f"s{i}", NOW - timedelta(days=100 + i), 10 - i, i not in (0, 1)) for i in range(6)]
    decisions = plan(snaps, RetentionConfig(keep_days=7, keep_last=2), NOW)
    by_id = {d.id: d for d in decisions}
    assert by_id["s0"].keep and "damaged" in by_id["s0"].reasons[0]
    assert by_id["s2"].reasons == ["keep_last 1/2"] and by_id["s3"].reasons == ["keep_last 2/2"]
    assert not by_id["s4"].keep and not by_id["s5"].keep


def test_newest_is_by_sequence_so_a_clock_gone_backwards_keeps_the_latest_snapshot():
    # The newest snapshot (sequence 5) was taken after the clock jumped back 30 days.
    snaps = [Candidate(f"s{seq}", NOW - timedelta(days=5 - seq), seq, True) for seq in range(1, 5)]
    snaps.append(Candidate("s5", NOW - timedelta(days=30), 5, True))
    decisions = plan(snaps, RetentionConfig(keep_days=7, keep_last=1), NOW)
    assert {d.id: d.keep for d in decisions}["s5"] is True


def test_snapshots_dated_in_the_future_are_kept():
    snaps = [Candidate("future", NOW + timedelta(days=3), 1, True),
             Candidate("now", NOW, 2, True)]
    decisions = plan(snaps, RetentionConfig(keep_days=7, keep_last=1), NOW)
    assert all(d.keep for d in decisions)
    assert "clock skew" in {d.id: d for d in decisions}["future"].reasons[0]


def test_gfs_rules_keep_one_per_day_week_and_month_as_a_union():
    # Four snapshots a day for 120 days.
    snaps = []
    seq = 0
    for day in range(120, 0, -1):
        for hour in (0, 6, 12, 18):
            seq += 1
            snaps.append(Candidate(f"d{day}h{hour}", NOW - timedelta(days=day, hours=-hour), seq, True))
    policy = RetentionConfig(keep_days=0, keep_last=1, keep_daily=7, keep_weekly=4, keep_monthly=3)
    decisions = plan(snaps, policy, NOW)
    keep = [d for d in decisions if d.keep]
    daily_kept = [d for d in keep if any(r.startswith("daily") for r in d.reasons)]
    assert len(daily_kept) == 7
    assert len({next(c for c in snaps if c.id == d.id).time.date() for d in daily_kept}) == 7
    assert len([d for d in keep if any(r.startswith("weekly") for r in d.reasons)]) == 4
    assert len([d for d in keep if any(r.startswith("monthly") for r in d.reasons)]) == 3
    # Each daily pick is the newest of its day (18:00).
    assert all(d.id.endswith("h18") for d in daily_kept)
    assert len(keep) < 7 + 4 + 3 + 1 + 1


def test_keep_days_zero_turns_the_age_rule_off():
    decisions = plan(daily(5), RetentionConfig(keep_days=0, keep_last=2), NOW)
    assert kept(decisions) == ["s005", "s004"]
