"""Abuse limits: token buckets per connection, connection limits per IP and per process."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from socketsvc.domain.errors import RateLimited, Unavailable

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_TRACKED_ADDRESSES = 100_000


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second up to `burst`; `take()` is False when empty."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait(self) -> float:
        """Seconds until the next `take()` can succeed (as of the last one)."""
        return max(0.0, (1.0 - self.tokens) / self.rate)


@dataclass(frozen=True)
class EventLimits:
    message_rate: float
    message_burst: float
    typing_rate: float = 2.0
    typing_burst: float = 5.0
    event_rate: float = 50.0
    event_burst: float = 200.0
    abuse_strikes: int = 30
    """Refusals in a row (without an accepted event between) after which we disconnect."""


class ConnectionBudget:
    """Per-connection buckets: messages, typing, and every event together.

    A new budget is full, as is one that has been idle for a while; namespaces therefore create
    a connection's budget at its first event rather than when it connects (idle connections then
    cost nothing here).
    """

    __slots__ = ("events", "limits", "messages", "strikes", "typing")

    def __init__(self, limits: EventLimits) -> None:
        self.limits = limits
        self.messages = TokenBucket(limits.message_rate, limits.message_burst)
        self.typing = TokenBucket(limits.typing_rate, limits.typing_burst)
        self.events = TokenBucket(limits.event_rate, limits.event_burst)
        self.strikes = 0

    def admit(self, event: str) -> None:
        """Raise `RateLimited` (with the wait until a retry can pass) when the event is over its
        budget."""
        bucket = self.events
        allowed = bucket.take()
        if allowed and event == "message":
            bucket = self.messages
            allowed = bucket.take()
        elif allowed and event == "typing":
            bucket = self.typing
            allowed = bucket.take()
        if allowed:
            self.strikes = 0
            return
        self.strikes += 1
        raise RateLimited(f"too many {event} events; slow down", retry_after=bucket.wait())

    @property
    def abusive(self) -> bool:
        return self.strikes >= self.limits.abuse_strikes


class ConnectionGate:
    """Connection attempts per IP (a sliding minute), open connections per IP and in total."""

    def __init__(self, attempts_per_minute: int, per_ip: int, total: int) -> None:
        self.attempts_per_minute = attempts_per_minute
        self.per_ip = per_ip
        self.total = total
        self._attempts: OrderedDict[str, TokenBucket] = OrderedDict()
        self._open: dict[str, int] = {}
        """Open connections per address; an address without any has no entry."""
        self._open_total = 0

    def admit(self, ip: str) -> None:
        """Count a connection attempt; raise if it must be refused."""
        bucket = self._attempts.get(ip)
        if bucket is None:
            bucket = TokenBucket(self.attempts_per_minute / 60.0, float(self.attempts_per_minute))
            self._attempts[ip] = bucket
            if len(self._attempts) > MAX_TRACKED_ADDRESSES:
                self._forget_one()
        else:
            self._attempts.move_to_end(ip)
        if not bucket.take():
            raise RateLimited(
                "too many connection attempts from your address", retry_after=bucket.wait()
            )
        if self._open_total >= self.total:
            raise Unavailable("this server is full; try again shortly")
        if self._open.get(ip, 0) >= self.per_ip:
            raise RateLimited("too many open connections from your address")

    def _forget_one(self) -> None:
        """Bounded memory under a spray of addresses: forget the least recently seen address
        whose budget has refilled (forgetting it changes nothing); keep exhausted ones."""
        for _ in range(16):
            ip, bucket = self._attempts.popitem(last=False)
            bucket.take()  # refresh its tokens (and spend one, which a full bucket can spare)
            if bucket.tokens + 1.0 >= bucket.burst:
                return
            self._attempts[ip] = bucket  # still exhausted: keep it, look at the next one
        self._attempts.popitem(last=False)

    def opened(self, ip: str) -> None:
        self._open[ip] = self._open.get(ip, 0) + 1
        self._open_total += 1

    def closed(self, ip: str) -> None:
        count = self._open.get(ip, 0)
        if count > 0:
            self._open_total -= 1
            if count == 1:
                del self._open[ip]
            else:
                self._open[ip] = count - 1

    @property
    def open_total(self) -> int:
        return self._open_total


def client_ip(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client's address: the TCP peer, or, only when the peer is a trusted proxy, the
    right-most address in X-Forwarded-For that is not itself a trusted proxy."""
    if not peer:
        return "unknown"
    if not forwarded_for or not _trusted(peer, trusted):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _trusted(hop, trusted):
            return hop
    return peer


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
