"""A per-client limit on unauthenticated requests, so a flood cannot fill the audit log.

Every refused request (401) is audited -- up to a point.  :class:`UnauthenticatedLimiter`
keeps, per client address, a token bucket (``rate_per_s``, ``burst``) and a per-minute count
of audit rows:

* within the bucket the request is answered 401, and audited while the client has fewer
  than ``audit_per_minute`` rows this minute; the first refusal beyond that writes one
  *summary* row (``details.summary``), the rest of the minute is counted only;
* beyond the bucket the request is answered 429 (``Retry-After``) and not audited singly;
* the next refusal after the minute ends first writes a summary row with how many refusals
  of the previous minute were not audited one by one.

So a client costs at most ``audit_per_minute + 2`` audit rows a minute however hard it
floods.  The state is bounded (``max_clients``; the least recently seen are forgotten).
Pure logic with an injectable clock: the caller writes the rows.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Decision", "UnauthenticatedLimiter"]

_WINDOW_S = 60.0


@dataclass(frozen=True)
class Decision:
    """What to do with one unauthenticated request of one client."""

    allowed: bool  # False: answer 429 instead of 401
    audit: bool  # write this refusal's own audit row
    summary_start: bool = False  # write a "further refusals not audited singly" row
    suppressed_before: int = 0  # >0: write a summary row for the previous minute first
    retry_after_s: float = 0.0


@dataclass
class _Client:
    tokens: float
    updated: float
    window_start: float
    audited: int = 0
    suppressed: int = 0
    summarised: bool = False


class UnauthenticatedLimiter:
    """Token bucket and audit budget per client (see the module docstring)."""

    def __init__(
        self,
        *,
        rate_per_s: float = 5.0,
        burst: int = 20,
        audit_per_minute: int = 10,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or audit_per_minute < 0 or max_clients < 1:
            raise ValueError("rate_per_s > 0, burst >= 1, audit_per_minute >= 0 required")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.audit_per_minute = audit_per_minute
        self.max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self.rejected = 0
        self.suppressed = 0

    def hit(self, client: str | None) -> Decision:
        """Account one unauthenticated request of ``client`` (its address)."""
        now = self._clock()
        key = client or "unknown"
        state = self._clients.get(key)
        if state is None:
            state = _Client(tokens=float(self.burst), updated=now, window_start=now)
            self._clients[key] = state
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(key)
        suppressed_before = 0
        if now - state.window_start >= _WINDOW_S:
            suppressed_before = state.suppressed
            state.window_start, state.audited, state.suppressed = now, 0, 0
            state.summarised = False
        refill = (now - state.updated) * self.rate_per_s
        state.tokens = min(float(self.burst), state.tokens + refill)
        state.updated = now
        allowed = state.tokens >= 1.0
        if allowed:
            state.tokens -= 1.0
        else:
            self.rejected += 1
        audit = allowed and state.audited < self.audit_per_minute
        summary_start = False
        if audit:
            state.audited += 1
        else:
            state.suppressed += 1
            self.suppressed += 1
            if not state.summarised:
                state.summarised = summary_start = True
        retry = 0.0 if allowed else (1.0 - state.tokens) / self.rate_per_s
        return Decision(allowed, audit, summary_start, suppressed_before, retry)
