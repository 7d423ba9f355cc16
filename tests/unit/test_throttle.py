"""Sign-in throttling rules (corral.domain.throttle), on a clock the test moves."""

from __future__ import annotations

from corral.domain.throttle import Rule, SignInThrottle, address_key

EMAIL = "alice@example.com"


def _throttle() -> SignInThrottle:
    return SignInThrottle(pair=Rule(3, 60), address=Rule(10, 60), account=Rule(6, 60), max_keys=1000)


def test_a_guesser_at_one_account_is_paused_after_a_few_tries_and_resumes_when_the_window_passes():
    t = _throttle()
    for second in range(3):
        assert t.retry_after(EMAIL, "10.0.0.1", second) == 0
        t.failed(EMAIL, "10.0.0.1", second)
    assert t.retry_after(EMAIL, "10.0.0.1", 3) == 57  # until the first failure leaves the window
    assert t.retry_after(EMAIL.upper() + " ", "10.0.0.1", 3) == 57  # the same account, however typed
    assert t.retry_after(EMAIL, "10.0.0.1", 60.5) == 0


def test_the_owner_elsewhere_is_not_locked_out_by_a_guesser():
    t = _throttle()
    for second in range(3):
        t.failed(EMAIL, "10.0.0.1", second)
    assert t.retry_after(EMAIL, "10.0.0.1", 4) > 0
    assert t.retry_after(EMAIL, "192.168.1.5", 4) == 0


def test_one_address_spraying_many_accounts_is_paused():
    t = _throttle()
    for n in range(10):
        t.failed(f"user{n}@example.com", "10.0.0.9", n)
    assert t.retry_after("someone-new@example.com", "10.0.0.9", 11) > 0
    assert t.retry_after("someone-new@example.com", "10.0.0.10", 11) == 0


def test_many_addresses_at_one_account_pause_only_addresses_that_failed():
    t = _throttle()
    for n in range(6):  # one try each from six addresses: the account's bound
        t.failed(EMAIL, f"10.0.1.{n}", n)
    assert t.retry_after(EMAIL, "10.0.1.0", 7) > 0  # a guessing address waits
    assert t.retry_after(EMAIL, "10.0.2.1", 7) == 0  # the owner's clean address does not


def test_a_success_clears_its_own_count_only():
    t = _throttle()
    for second in range(2):
        t.failed(EMAIL, "10.0.0.1", second)
    t.succeeded(EMAIL, "10.0.0.1")
    t.failed(EMAIL, "10.0.0.1", 3)
    assert t.retry_after(EMAIL, "10.0.0.1", 4) == 0


def test_memory_is_bounded_however_many_addresses_spray():
    t = SignInThrottle(max_keys=100)
    for n in range(5000):
        t.failed(f"u{n}@example.com", f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", 1.0)
    assert max(len(w.times) for w in (t._pairs, t._addresses, t._accounts)) <= 100


def test_addresses_are_counted_per_ipv4_address_and_per_ipv6_64():
    assert address_key("10.1.2.3") == "10.1.2.3"
    assert address_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    assert address_key("testclient") == "testclient"
