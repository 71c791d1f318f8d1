"""The catalogue of metrics: documented, named as Prometheus recommends."""

from __future__ import annotations

import re

from conftest import ROOT
from tracker_backup.metrics import CATALOGUE, PREFIX


def test_every_metric_is_documented_in_monitoring_md_with_its_type():
    docs = (ROOT / "docs/monitoring.md").read_text()
    for name, (kind, _help) in CATALOGUE.items():
        row = re.search(rf"^\| `{PREFIX}{name}` \| (\w+) \|", docs, re.M)
        assert row, f"{PREFIX}{name} is not in docs/monitoring.md's table"
        assert row.group(1) == kind, name


def test_names_carry_their_unit_and_counters_end_in_total():
    for name, (kind, text) in CATALOGUE.items():
        assert text.endswith(".") and len(text) > 20, name
        if "timestamp" in name or name.endswith("duration_seconds"):
            assert name.endswith("_seconds"), name
        assert (kind == "counter") == name.endswith("_total"), name
