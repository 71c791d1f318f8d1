"""The text exposition writer: escaping, number formatting, names that Prometheus accepts."""

from __future__ import annotations

import math

import pytest

from support.prom_text import Exposition
from tracker_backup.metrics.exposition import Family, format_value, render


def test_values_are_written_as_prometheus_reads_them():
    assert format_value(3.0) == "3"
    assert format_value(0.25) == "0.25"
    assert format_value(1796107764.770241) == "1796107764.770241"
    assert format_value(math.nan) == "NaN"
    assert format_value(math.inf) == "+Inf" and format_value(-math.inf) == "-Inf"


def test_label_values_and_help_are_escaped_and_read_back_unchanged():
    fam = Family("x_bytes", "gauge", 'help with \\ and\nnewline')
    fam.add(1, source='a"b\\c\nd')
    text = render([fam])
    assert '# HELP x_bytes help with \\\\ and\\nnewline' in text
    assert Exposition(text).value("x_bytes", source='a"b\\c\nd') == 1


def test_families_without_samples_are_left_out_and_the_text_ends_in_a_newline():
    empty = Family("a_total", "counter", "nothing yet")
    full = Family("b_seconds", "gauge", "something")
    full.add(2)
    assert render([empty, full]) == "# HELP b_seconds something\n# TYPE b_seconds gauge\nb_seconds 2\n"
    assert render([empty]) == ""


@pytest.mark.parametrize("name,kind", [("9bad", "gauge"), ("has-dash", "gauge"),
                                       ("runs_failed", "counter"), ("ok_seconds", "histogram")])
def test_invalid_names_and_types_are_refused(name, kind):
    with pytest.raises(ValueError):
        Family(name, kind, "help")


def test_a_family_given_twice_is_refused():
    a, b = Family("x", "gauge", "h"), Family("x", "gauge", "h")
    a.add(1)
    b.add(2)
    with pytest.raises(ValueError, match="twice"):
        render([a, b])
