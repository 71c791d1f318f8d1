"""Timer times from systemd: "no next elapse" (UINT64_MAX) is not a date (issue 15, item 1)."""

from __future__ import annotations

from tracker_backup import systemd

UINT64_MAX = 2**64 - 1


def test_no_elapse_is_none_not_a_date_in_the_year_586524():
    # systemd reports an inactive timer's NextElapseUSecRealtime as UINT64_MAX ("infinity").
    assert systemd.usec_to_seconds(UINT64_MAX) is None
    assert systemd.usec_to_seconds(0) is None
    assert systemd.usec_to_seconds(1_700_000_000_250_000) == 1_700_000_000.25
