"""TokenBucket refill math, per-connection budgets, the connection gate, and client_ip."""

from __future__ import annotations

import ipaddress
import time

import pytest

from socketsvc.domain import limits
from socketsvc.domain.errors import RateLimited, Unavailable
from socketsvc.domain.limits import (
    ConnectionBudget,
    ConnectionGate,
    EventLimits,
    TokenBucket,
    client_ip,
)


class Clock:
    """Stands in for time.monotonic() inside socketsvc.domain.limits.

    Buckets stamp their creation with the real time.monotonic (a dataclass default_factory bound
    at import), so the fake clock starts ahead of it: a new bucket is full at its first take.
    """

    def __init__(self) -> None:
        self.now = time.monotonic() + 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(limits.time, "monotonic", fake)
    return fake


def drain(bucket: TokenBucket, now: float) -> int:
    taken = 0
    while bucket.take(now=now):
        taken += 1
        assert taken < 10_000
    return taken


# -- TokenBucket ------------------------------------------------------------------------------


def test_bucket_starts_full_and_refuses_when_empty():
    bucket = TokenBucket(rate=2.0, burst=5.0, stamp=0.0)
    assert [bucket.take(now=0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.tokens == 0.0


def test_bucket_refills_at_rate_with_fractions_kept():
    bucket = TokenBucket(rate=4.0, burst=2.0, stamp=0.0)
    assert drain(bucket, 0.0) == 2
    assert bucket.take(now=0.125) is False  # 0.5 token
    assert bucket.tokens == 0.5
    assert bucket.take(now=0.25) is True  # 0.5 + 0.5 = 1 token
    assert bucket.tokens == 0.0
    assert bucket.take(now=0.3125) is False  # 0.25
    assert bucket.take(now=0.5) is True  # 0.25 + 0.75 = 1
    assert bucket.stamp == 0.5


def test_bucket_never_holds_more_than_burst():
    bucket = TokenBucket(rate=10.0, burst=3.0, stamp=0.0)
    drain(bucket, 0.0)
    assert drain(bucket, 3600.0) == 3  # an hour idle still buys only a burst
    assert bucket.tokens == 0.0


def test_bucket_explicit_tokens_and_slow_rates():
    bucket = TokenBucket(rate=0.01, burst=20.0, tokens=1.0, stamp=0.0)  # MESSAGE_RATE minimum
    assert bucket.take(now=0.0) is True
    assert bucket.take(now=99.0) is False  # 0.99 token
    assert bucket.take(now=100.0) is True


def test_bucket_sustained_rate_over_time():
    bucket = TokenBucket(rate=2.0, burst=20.0, stamp=0.0)
    accepted = sum(bucket.take(now=i / 100) for i in range(1000))  # 100 attempts/s for 10 s
    assert accepted == 20 + 19  # the burst, then 2/s for the 9.99 s that follow


# -- ConnectionBudget -------------------------------------------------------------------------


def test_budget_messages_typing_and_events_are_separate(clock: Clock):
    budget = ConnectionBudget(EventLimits(message_rate=1.0, message_burst=3.0))
    for _ in range(3):
        budget.admit("message")
    with pytest.raises(RateLimited) as refused:
        budget.admit("message")
    assert refused.value.code == "rate_limited"
    assert refused.value.to_dict() == {
        "code": "rate_limited",
        "message": "too many message events; slow down",
        "retry_after_ms": 1000,  # an empty bucket at 1 token/s
    }
    for _ in range(5):  # typing has its own budget (2/s, burst 5)
        budget.admit("typing")
    with pytest.raises(RateLimited) as typing_refused:
        budget.admit("typing")
    assert typing_refused.value.to_dict()["retry_after_ms"] == 500
    budget.admit("sync")  # other events only count against the overall budget
    clock.advance(0.75)
    with pytest.raises(RateLimited) as early:
        budget.admit("message")
    assert early.value.to_dict()["retry_after_ms"] == 250  # what is left of the second
    clock.advance(0.25)
    budget.admit("message")
    with pytest.raises(RateLimited):
        budget.admit("message")


def test_budget_overall_cap_counts_every_event(clock: Clock):
    limits_ = EventLimits(message_rate=100.0, message_burst=100.0, event_rate=1.0, event_burst=10.0)
    budget = ConnectionBudget(limits_)
    for event in ["message", "sync", "read", "other", "accept"] * 2:
        budget.admit(event)
    with pytest.raises(RateLimited) as refused:
        budget.admit("read")
    assert "read" in refused.value.message
    clock.advance(1.0)
    budget.admit("other")


def test_budget_strikes_make_a_connection_abusive_and_reset_on_success(clock: Clock):
    budget = ConnectionBudget(EventLimits(message_rate=1.0, message_burst=1.0))
    budget.admit("message")
    for i in range(1, 30):
        with pytest.raises(RateLimited):
            budget.admit("message")
        assert budget.strikes == i and not budget.abusive
    with pytest.raises(RateLimited):
        budget.admit("message")
    assert budget.strikes == 30 and budget.abusive
    budget.admit("sync")  # any accepted event clears the strikes
    assert budget.strikes == 0 and not budget.abusive
    clock.advance(1.0)
    budget.admit("message")
    assert budget.strikes == 0


def test_budgets_and_buckets_have_no_instance_dicts():
    budget = ConnectionBudget(EventLimits(1.0, 1.0))
    for item in (budget, budget.messages, budget.typing, budget.events):
        assert not hasattr(item, "__dict__")


def test_budget_abuse_threshold_is_configurable(clock: Clock):
    budget = ConnectionBudget(EventLimits(1.0, 1.0, abuse_strikes=2))
    budget.admit("message")
    with pytest.raises(RateLimited):
        budget.admit("message")
    assert not budget.abusive
    with pytest.raises(RateLimited):
        budget.admit("message")
    assert budget.abusive


# -- ConnectionGate ---------------------------------------------------------------------------


def test_gate_attempts_per_minute_per_address(clock: Clock):
    gate = ConnectionGate(attempts_per_minute=3, per_ip=100, total=100)
    for _ in range(3):
        gate.admit("198.51.100.1")
    with pytest.raises(RateLimited) as refused:
        gate.admit("198.51.100.1")
    assert "attempts" in refused.value.message
    gate.admit("198.51.100.2")  # another address has its own budget
    clock.advance(19.9)
    with pytest.raises(RateLimited):
        gate.admit("198.51.100.1")
    clock.advance(0.2)  # 3/min: one attempt back after 20 s
    gate.admit("198.51.100.1")
    with pytest.raises(RateLimited):
        gate.admit("198.51.100.1")


def test_gate_counts_open_connections_per_address_and_releases_them(clock: Clock):
    gate = ConnectionGate(attempts_per_minute=1000, per_ip=2, total=100)
    for _ in range(2):
        gate.admit("203.0.113.5")
        gate.opened("203.0.113.5")
    assert gate.open_total == 2
    with pytest.raises(RateLimited) as refused:
        gate.admit("203.0.113.5")
    assert "open connections" in refused.value.message
    gate.admit("203.0.113.6")
    gate.closed("203.0.113.5")
    assert gate.open_total == 1
    gate.admit("203.0.113.5")


def test_gate_total_is_unavailable_and_checked_before_per_address(clock: Clock):
    gate = ConnectionGate(attempts_per_minute=1000, per_ip=1, total=2)
    gate.opened("192.0.2.1")
    gate.opened("192.0.2.2")
    for address in ("192.0.2.3", "192.0.2.1"):
        with pytest.raises(Unavailable) as refused:
            gate.admit(address)
        assert refused.value.code == "unavailable"
    gate.closed("192.0.2.2")
    gate.admit("192.0.2.3")


def test_gate_close_never_goes_negative(clock: Clock):
    gate = ConnectionGate(attempts_per_minute=10, per_ip=1, total=1)
    gate.closed("192.0.2.9")  # never opened
    gate.opened("192.0.2.9")
    gate.closed("192.0.2.9")
    gate.closed("192.0.2.9")  # twice
    assert gate.open_total == 0
    gate.admit("192.0.2.9")
    gate.opened("192.0.2.9")
    assert gate.open_total == 1


def test_gate_keeps_no_per_address_count_without_open_connections(clock: Clock):
    gate = ConnectionGate(attempts_per_minute=10, per_ip=5, total=100)
    gate.admit("192.0.2.8")  # admitted, then refused further on (a bad token): never opened
    assert gate._open == {}
    gate.opened("192.0.2.8")
    gate.opened("192.0.2.8")
    gate.closed("192.0.2.8")
    assert gate._open == {"192.0.2.8": 1}
    gate.closed("192.0.2.8")
    assert gate._open == {} and gate.open_total == 0


def test_gate_refused_attempts_still_count_as_attempts(clock: Clock):
    gate = ConnectionGate(attempts_per_minute=3, per_ip=1, total=100)
    gate.opened("192.0.2.7")
    for _ in range(3):
        with pytest.raises(RateLimited):
            gate.admit("192.0.2.7")  # over the per-address cap, each try costs an attempt
    gate.closed("192.0.2.7")
    with pytest.raises(RateLimited) as refused:
        gate.admit("192.0.2.7")
    assert "attempts" in refused.value.message


def test_gate_a_spray_of_addresses_does_not_reset_anothers_attempts(clock: Clock):
    gate = ConnectionGate(attempts_per_minute=2, per_ip=100, total=10**9)
    gate.admit("198.51.100.77")
    gate.admit("198.51.100.77")
    network = ipaddress.ip_network("2001:db8::/64")
    for i in range(100_002):
        gate.admit(str(network[i + 1]))
    with pytest.raises(RateLimited):
        gate.admit("198.51.100.77")


# -- client_ip --------------------------------------------------------------------------------

LOCAL = (ipaddress.ip_network("127.0.0.0/8"),)
PROXIES = (
    ipaddress.ip_network("127.0.0.1/32"),
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


@pytest.mark.parametrize(
    "case, peer, forwarded, trusted, expected",
    [
        ("no peer", None, "1.2.3.4", LOCAL, "unknown"),
        ("no header", "198.51.100.1", None, LOCAL, "198.51.100.1"),
        ("empty header", "127.0.0.1", "", LOCAL, "127.0.0.1"),
        ("untrusted peer with a header", "198.51.100.1", "1.2.3.4", LOCAL, "198.51.100.1"),
        ("no trusted proxies at all", "127.0.0.1", "1.2.3.4", (), "127.0.0.1"),
        ("trusted peer", "127.0.0.1", "1.2.3.4", LOCAL, "1.2.3.4"),
        ("trusted peer, spaces", "127.0.0.1", "  1.2.3.4  ", LOCAL, "1.2.3.4"),
        ("client-forged left part", "127.0.0.1", "6.6.6.6, 1.2.3.4", LOCAL, "1.2.3.4"),
        (
            "chain of trusted proxies",
            "127.0.0.1",
            "1.2.3.4, 10.0.0.2, 10.0.0.3",
            PROXIES,
            "1.2.3.4",
        ),
        (
            "forged hop behind the chain",
            "10.1.1.1",
            "9.9.9.9, 1.2.3.4, 10.0.0.2",
            PROXIES,
            "1.2.3.4",
        ),
        ("all hops trusted", "127.0.0.1", "10.0.0.2, 10.0.0.3", PROXIES, "127.0.0.1"),
        ("empty items", "127.0.0.1", "1.2.3.4, , ", LOCAL, "1.2.3.4"),
        ("ipv6 proxy and client", "::1", "2001:db8::7", PROXIES, "2001:db8::7"),
        ("unparseable hop is not trusted", "127.0.0.1", "1.2.3.4, junk", LOCAL, "junk"),
    ],
)
def test_client_ip(case, peer, forwarded, trusted, expected):
    assert client_ip(peer, forwarded, trusted) == expected, case
