"""The workload name rule, and the HTML pattern the web form carries, agree."""

from __future__ import annotations

import re

import pytest

from corral.domain.names import WORKLOAD_NAME_HTML_PATTERN, WORKLOAD_NAME_RULE, check_workload_name

SAMPLES = ["a", "A9", "llama-3.1_ft", "x" * 128, "x" * 129, "", "Hello World!", "a/b", "-a", ".a", "_a", "a b",
           "é", "a\n", "a\x00", "ab.", "a..b"]


@pytest.mark.parametrize("name", SAMPLES)
def test_the_html_pattern_accepts_what_the_rule_accepts(name):
    try:
        check_workload_name(name)
        valid = True
    except ValueError as exc:
        assert str(exc) == f"must be {WORKLOAD_NAME_RULE}"
        valid = False
    # The browser anchors the pattern at both ends.
    assert bool(re.fullmatch(WORKLOAD_NAME_HTML_PATTERN, name)) == valid
