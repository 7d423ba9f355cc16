"""CORRAL_USAGE_INTERVAL_S: seconds between an agent's usage samples, 0 for none; a bad
value is refused saying what to give."""

from __future__ import annotations

import re

import pytest

from corral.agent.usage import DEFAULT_INTERVAL_S, interval_from_env


@pytest.mark.parametrize(("value", "expected"), [(None, DEFAULT_INTERVAL_S), ("", DEFAULT_INTERVAL_S), ("0", 0.0),
                                                  ("2.5", 2.5), (" 30 ", 30.0)])
def test_interval(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("CORRAL_USAGE_INTERVAL_S", raising=False)
    else:
        monkeypatch.setenv("CORRAL_USAGE_INTERVAL_S", value)
    assert interval_from_env() == expected


@pytest.mark.parametrize(("value", "message"), [("often", "give seconds between usage samples"),
                                                ("-1", "give 0 (no samples) or at least 0.5 seconds"),
                                                ("0.01", "give 0 (no samples) or at least 0.5 seconds")])
def test_bad_interval(monkeypatch, value, message):
    monkeypatch.setenv("CORRAL_USAGE_INTERVAL_S", value)
    with pytest.raises(ValueError, match=re.escape(message)):
        interval_from_env()
