"""Sign-in throttling: how many failed passwords, for which account, from where.

Three counts of failures within a sliding window, each with its own bound:

- per (account, address): tight. A guesser at one account from one address is paused
  after a handful of tries, while the account's owner signs in from anywhere else.
- per address, over all accounts: looser. One address spraying many accounts is paused.
- per account, over all addresses: loose, and it pauses only addresses that have
  themselves failed for that account. A guesser with many addresses gets about one try
  from each; the owner, from an address that has not failed, is never locked out by it.

Only failures count; a success clears its (account, address) count. The state is kept
in memory by whoever holds the throttle (per server process), bounded in size.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    max_failures: int
    window_s: float


PER_PAIR = Rule(5, 15 * 60)
PER_ADDRESS = Rule(50, 15 * 60)
PER_ACCOUNT = Rule(100, 15 * 60)


def address_key(address: str) -> str:
    """The unit an address is counted in: an IPv4 address, or an IPv6 /64 (one host
    usually holds a whole /64, so counting single IPv6 addresses would count nothing)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class _Window:
    """Failure times per key within a rule's window; at most ``max_failures`` kept a key."""

    def __init__(self, rule: Rule, max_keys: int) -> None:
        self.rule = rule
        self.max_keys = max_keys
        self.times: OrderedDict[object, deque[float]] = OrderedDict()

    def _live(self, key: object, now: float) -> deque[float] | None:
        times = self.times.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.rule.window_s:
            times.popleft()
        if not times:
            del self.times[key]
            return None
        return times

    def count(self, key: object, now: float) -> int:
        times = self._live(key, now)
        return len(times) if times else 0

    def wait(self, key: object, now: float) -> float:
        """Seconds until the key may try again; 0 if it may now."""
        times = self._live(key, now)
        if not times or len(times) < self.rule.max_failures:
            return 0.0
        return times[0] + self.rule.window_s - now

    def add(self, key: object, now: float) -> None:
        times = self._live(key, now)
        if times is None:
            times = self.times[key] = deque(maxlen=self.rule.max_failures)
            while len(self.times) > self.max_keys:  # bounded: the least recently failed go first
                self.times.popitem(last=False)
        else:
            self.times.move_to_end(key)
        times.append(now)

    def clear(self, key: object) -> None:
        self.times.pop(key, None)


class SignInThrottle:
    def __init__(self, *, pair: Rule = PER_PAIR, address: Rule = PER_ADDRESS, account: Rule = PER_ACCOUNT,
                 max_keys: int = 100_000) -> None:
        self._pairs = _Window(pair, max_keys)
        self._addresses = _Window(address, max_keys)
        self._accounts = _Window(account, max_keys)
        self._lock = threading.Lock()

    @staticmethod
    def _keys(account: str, address: str) -> tuple[str, str]:
        return account.strip().lower()[:254], address_key(address)

    def retry_after(self, account: str, address: str, now: float) -> float:
        """Seconds before this address may try this account again; 0: it may try now."""
        account, address = self._keys(account, address)
        with self._lock:
            waits = [self._pairs.wait((account, address), now), self._addresses.wait(address, now)]
            if self._pairs.count((account, address), now):
                waits.append(self._accounts.wait(account, now))
        return max(waits)

    def failed(self, account: str, address: str, now: float) -> None:
        account, address = self._keys(account, address)
        with self._lock:
            self._pairs.add((account, address), now)
            self._addresses.add(address, now)
            self._accounts.add(account, now)

    def succeeded(self, account: str, address: str) -> None:
        account, address = self._keys(account, address)
        with self._lock:
            self._pairs.clear((account, address))
