"""Unauthenticated floods: a per-client rate limit (429) and a bounded number of audit rows
(summaries beyond a threshold), on the real review API server and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from review_helpers import ReviewServer, Tokens, create_pg_database, drop_pg_database, migrate
from sqlalchemy import select

from integration.review.auth import TokenVerifier
from integration.review.web.rate_limit import UnauthenticatedLimiter
from integration.storage.db import AuditEntry, open_database


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_then_429_and_audit_budget_then_one_summary() -> None:
    clock = Clock()
    limiter = UnauthenticatedLimiter(rate_per_s=1.0, burst=5, audit_per_minute=3, clock=clock)
    decisions = [limiter.hit("10.0.0.1") for _ in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert [d.audit for d in decisions] == [True] * 3 + [False] * 5
    assert [d.summary_start for d in decisions] == [False] * 3 + [True] + [False] * 4
    assert decisions[5].retry_after_s == pytest.approx(1.0)
    assert limiter.hit("10.0.0.2").audit  # per client
    clock.now += 2.0  # the bucket refills at rate_per_s
    assert limiter.hit("10.0.0.1").allowed
    clock.now += 60.0  # a new minute: the previous one is summarised first
    fresh = limiter.hit("10.0.0.1")
    assert fresh.suppressed_before == 6 and fresh.audit and fresh.allowed


def test_state_is_bounded() -> None:
    limiter = UnauthenticatedLimiter(max_clients=3)
    for i in range(10):
        limiter.hit(f"10.0.0.{i}")
    assert len(limiter._clients) == 3


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        UnauthenticatedLimiter(rate_per_s=0)


@pytest.fixture(scope="module")
def flood_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewServer]:
    name, url = create_pg_database()
    tokens = Tokens(tmp_path_factory.mktemp("keys") / "dev-key.pem")
    try:
        migrate(url)
        verifier = TokenVerifier(
            issuer="radgpt-dev", audience="radgpt", dev_key_path=tokens.key_path
        )
        limiter = UnauthenticatedLimiter(rate_per_s=5.0, burst=20, audit_per_minute=10)
        server = ReviewServer(url, verifier, limiter=limiter).start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        drop_pg_database(name)


async def test_a_flood_of_anonymous_requests_is_limited_and_summarised(
    flood_server: ReviewServer,
) -> None:
    async with httpx.AsyncClient(base_url=flood_server.url, timeout=10) as http:
        answers = await asyncio.gather(*(http.get("/api/drafts") for _ in range(200)))
    codes = [a.status_code for a in answers]
    assert set(codes) == {401, 429}
    assert 20 <= codes.count(401) <= 25  # the burst, plus what refilled meanwhile
    limited = next(a for a in answers if a.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    database = open_database(flood_server.db_url)
    try:
        async with database.sessions() as session:
            rows = (
                await session.execute(
                    select(AuditEntry).where(AuditEntry.action == "unauthenticated")
                )
            ).scalars().all()
    finally:
        await database.dispose()
    singly = [r for r in rows if "summary" not in r.details]
    summaries = [r for r in rows if "summary" in r.details]
    assert len(singly) == 10 and len(summaries) == 1  # not 200 rows
    assert all(r.actor == "anonymous" and r.outcome == "failure" for r in rows)
