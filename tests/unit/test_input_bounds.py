"""What the domain refuses before anything reaches a database: numbers it cannot hold,
values that are not numbers, NUL in what becomes a process's arguments or environment."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from corral.domain.resources import MAX_BYTES, MAX_MILLICORES, parse_bytes, parse_millicores
from corral.domain.workloads import WorkloadSpec

SPEC = TypeAdapter(WorkloadSpec)


@pytest.mark.parametrize("value", [None, True, [1], {"a": 1}, float("inf"), float("nan"), -1, 2**63, MAX_BYTES + 1,
                                   "65Pi", "9" * 400 + "Pi", "1e9"])
def test_byte_quantities_out_of_range_or_not_numbers_are_refused(value):
    with pytest.raises(ValueError):
        parse_bytes(value)


@pytest.mark.parametrize("value", [None, False, float("inf"), 2**63, MAX_MILLICORES // 1000 + 1, "1" * 30])
def test_cpu_quantities_out_of_range_or_not_numbers_are_refused(value):
    with pytest.raises(ValueError):
        parse_millicores(value)


def test_the_bounds_themselves_are_accepted():
    assert parse_bytes(MAX_BYTES) == parse_bytes("64Pi") == MAX_BYTES
    assert parse_millicores(MAX_MILLICORES // 1000) <= MAX_MILLICORES
    # 64 replicas at the bound still fit the database's 64-bit integers.
    assert 64 * MAX_BYTES < 2**63


@pytest.mark.parametrize("fields", [
    {"command": "echo a\x00b"}, {"command": ["sh", "-c", "x\x00"]}, {"env": {"A": "x\x00"}},
])
def test_nul_in_a_command_or_an_environment_value_is_refused(fields):
    # The web UI's forms reach the spec without passing the API's JSON checks.
    with pytest.raises(ValidationError, match="NUL"):
        SPEC.validate_python({"type": "custom", "name": "n", "project": "p", "command": "true", **fields})
