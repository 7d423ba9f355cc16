"""Resource vectors (gpu devices, cpu millicores, memory and ephemeral storage bytes)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DECIMAL = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P|m)?\s*$")


# Bounds that keep every sum Corral stores within the database's 64-bit integers (a
# request of 64 replicas at the bound, a cluster's capacity plus a guarantee): 64 PiB,
# about a billion cores, 16 million GPUs. Larger numbers are refused as invalid (422).
MAX_BYTES = 2**56
MAX_MILLICORES = 2**40
MAX_GPUS = 2**24


def _number(value: object, what: str) -> None:
    """Quantities are numbers or strings; anything else (null, true, a list) is invalid."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected {what}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected {what}, not {value}")


def _bounded(result: int, bound: int, shown: str) -> int:
    if result > bound:
        raise ValueError(f"must be at most {shown}")
    return result


def parse_bytes(value: int | float | str) -> int:
    """Parse a byte quantity: an integer, or Kubernetes-style "16Gi", "500M"."""
    _number(value, "a byte quantity such as 16Gi")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return _bounded(int(value), MAX_BYTES, "64Pi")
    match = _QUANTITY.match(value)
    if not match or match.group(2) == "m":
        raise ValueError(f"{value[:40]!r} is not a byte quantity (examples: 1073741824, 512Mi, 16Gi, 1T)")
    number, unit = float(match.group(1)), match.group(2)
    factor = _BINARY.get(unit) or _DECIMAL.get(unit) or 1
    if not math.isfinite(number * factor):
        raise ValueError("must be at most 64Pi")
    return _bounded(int(number * factor), MAX_BYTES, "64Pi")


def parse_millicores(value: int | float | str) -> int:
    """Parse CPU as cores ("2", 0.5) or millicores ("500m") into millicores."""
    _number(value, "a CPU quantity such as 2 or 500m")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        if value > MAX_MILLICORES:  # before multiplying: a huge float would not round
            raise ValueError(f"must be at most {MAX_MILLICORES // 1000} cores")
        return _bounded(int(round(value * 1000)), MAX_MILLICORES, f"{MAX_MILLICORES // 1000} cores")
    match = _QUANTITY.match(value)
    if not match or match.group(2) not in (None, "m"):
        raise ValueError(f"{value[:40]!r} is not a CPU quantity (examples: 2, 0.5, 500m)")
    number = float(match.group(1))
    if number > MAX_MILLICORES:
        raise ValueError(f"must be at most {MAX_MILLICORES // 1000} cores")
    millicores = int(round(number)) if match.group(2) == "m" else int(round(number * 1000))
    return _bounded(millicores, MAX_MILLICORES, f"{MAX_MILLICORES // 1000} cores")


def format_bytes(n: int) -> str:
    for unit, factor in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n >= factor:
            value = n / factor
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return str(n)


def format_millicores(m: int) -> str:
    return str(m // 1000) if m % 1000 == 0 else f"{m}m"


def cores(millicores: int) -> int | float:
    """CPU as the API shows it: cores, the number a request reads back as the same amount
    (2000 -> 2, 500 -> 0.5, 1 -> 0.001)."""
    return millicores // 1000 if millicores % 1000 == 0 else millicores / 1000


def format_quantity(name: str, value: int | None) -> str:
    """One dimension for a person: "2 cores", "500m", "16Gi", "4" GPUs; None is "unbounded"."""
    if value is None:
        return "unbounded"
    if name == "cpu":
        if value % 1000:
            return f"{value}m"
        return f"{value // 1000} core" if value == 1000 else f"{value // 1000} cores"
    if name in ("memory", "ephemeral_storage"):
        return format_bytes(value)
    return str(value)


def format_vector(amounts: dict[str, int | None]) -> str:
    """A resource vector for a person: "gpu 1, cpu 2 cores, memory 16Gi, ephemeral_storage 0"."""
    return ", ".join(f"{name} {format_quantity(name, value)}" for name, value in amounts.items())


@dataclass(frozen=True, slots=True)
class Resources:
    """A resource vector. The same shape serves requests, capacity, usage and quota."""

    gpu: int = 0
    cpu: int = 0  # millicores
    memory: int = 0  # bytes
    ephemeral_storage: int = 0  # bytes

    def __add__(self, other: Resources) -> Resources:
        return Resources(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple())))

    def __sub__(self, other: Resources) -> Resources:
        return Resources(*(a - b for a, b in zip(self.as_tuple(), other.as_tuple())))

    def scaled(self, factor: int) -> Resources:
        return Resources(*(a * factor for a in self.as_tuple()))

    def fits_within(self, bound: Resources) -> bool:
        return all(a <= b for a, b in zip(self.as_tuple(), bound.as_tuple()))

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.gpu, self.cpu, self.memory, self.ephemeral_storage)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def exceeded_dimensions(self, bound: Resources) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) > getattr(bound, f.name)]

    @classmethod
    def total(cls, items: list[Resources]) -> Resources:
        result = cls()
        for item in items:
            result = result + item
        return result


RESOURCE_NAMES = ("gpu", "cpu", "memory", "ephemeral_storage")


@dataclass(frozen=True, slots=True)
class Limit:
    """A quota limit: each dimension is bounded by an integer or unbounded (None)."""

    gpu: int | None = None
    cpu: int | None = None
    memory: int | None = None
    ephemeral_storage: int | None = None

    def admits(self, amount: Resources) -> bool:
        return not self.exceeded_dimensions(amount)

    def exceeded_dimensions(self, amount: Resources) -> list[str]:
        return [
            name
            for name in RESOURCE_NAMES
            if getattr(self, name) is not None and getattr(amount, name) > getattr(self, name)
        ]

    def as_dict(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in RESOURCE_NAMES}

    @classmethod
    def from_resources(cls, r: Resources) -> Limit:
        return cls(r.gpu, r.cpu, r.memory, r.ephemeral_storage)
