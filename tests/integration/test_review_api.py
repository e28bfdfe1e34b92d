"""The review/audit HTTP API against a real uvicorn server, real databases and a real broker.

One server per database back end (SQLite file, PostgreSQL) serves the whole module; every
state-changing case inserts its own draft.  Tokens are minted with the development key the
server trusts, plus tokens it must refuse (foreign key, expired, wrong issuer/audience).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from review_helpers import (
    FLAG_LATERALITY,
    ReviewServer,
    Tokens,
    auth,
    consume_all,
    insert_pending,
)

from integration.audit import AuditFilters, query_events
from integration.codec import parse_message
from integration.db import Database, DraftRecord
from integration.settings import KafkaSettings, TopicSettings


@pytest.fixture(scope="module")
def topics() -> TopicSettings:
    suffix = uuid.uuid4().hex[:8]
    return TopicSettings(hl7_out=f"test.final.hl7.{suffix}", fhir_out=f"test.final.fhir.{suffix}")


@pytest.fixture
async def http(server: ReviewServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        yield client


async def _events(db: Database, **filters: Any) -> list[Any]:
    async with db.sessions() as session:
        page = await query_events(session, AuditFilters(**filters))
    return list(page.items)


async def _count(db: Database, **filters: Any) -> int:
    async with db.sessions() as session:
        return (await query_events(session, AuditFilters(**filters))).total


# --- the role × endpoint matrix ----------------------------------------------------------------

REVIEW, AUDIT, ANY = "review", "audit", "any"
ENDPOINTS: dict[str, tuple[str, str, dict[str, Any] | None, str]] = {
    "list drafts": ("GET", "/api/drafts", None, REVIEW),
    "view draft": ("GET", "/api/drafts/{id}", None, REVIEW),
    "approve": ("POST", "/api/drafts/{id}/approve", {}, REVIEW),
    "reject": ("POST", "/api/drafts/{id}/reject", {"reason": "inaccurate"}, REVIEW),
    "query audit": ("GET", "/api/audit", None, AUDIT),
    "export csv": ("GET", "/api/audit/export?format=csv", None, AUDIT),
    "export fhir": ("GET", "/api/audit/export?format=fhir", None, AUDIT),
    "verify chain": ("GET", "/api/audit/verify", None, AUDIT),
    "stats": ("GET", "/api/stats", None, ANY),
    "me": ("GET", "/api/me", None, ANY),
}
ALLOWED = {
    "radiologist": {REVIEW, ANY},
    "compliance": {AUDIT, ANY},
    "admin": {REVIEW, AUDIT, ANY},
    "no-role": set(),
}
AUDITED_READ = {
    "list drafts": "listed",
    "view draft": "viewed",
    "approve": "approved",
    "reject": "rejected",
    "query audit": "queried",
    "export csv": "exported",
    "export fhir": "exported",
    "verify chain": "verified",
}


async def _call(
    http: httpx.AsyncClient, db: Database, endpoint: str, headers: dict[str, str]
) -> tuple[httpx.Response, str]:
    method, path, body, _ = ENDPOINTS[endpoint]
    draft_id = await insert_pending(db) if "{id}" in path else ""
    url = path.replace("{id}", draft_id)
    response = await http.request(method, url, headers=headers, json=body)
    return response, draft_id


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("role", list(ALLOWED))
async def test_role_matrix(
    http: httpx.AsyncClient, db: Database, tokens: Tokens, role: str, endpoint: str
) -> None:
    sub = f"{role}-{uuid.uuid4().hex[:8]}"
    if role == "no-role":  # a valid token whose roles live in a claim we do not read
        token = tokens.mint("radiologist", sub, role_claim="app_roles")
    else:
        token = tokens.mint(role, sub)
    response, draft_id = await _call(http, db, endpoint, auth(token))
    allowed = ENDPOINTS[endpoint][3] in ALLOWED[role]
    if allowed:
        assert response.status_code == 200, response.text
        action = AUDITED_READ.get(endpoint)
        if action is not None:
            rows = await _events(db, actor=sub, action=action)
            assert len(rows) == 1 and rows[0].outcome == "success"
            if draft_id:
                assert rows[0].entity_id == draft_id
    else:
        assert response.status_code == 403, response.text
        assert "insufficient_scope" in response.headers["www-authenticate"]
        rows = await _events(db, actor=sub, action="denied")
        assert len(rows) == 1
        assert rows[0].outcome == "denied"
        assert rows[0].entity_id == f"{ENDPOINTS[endpoint][0]} {ENDPOINTS[endpoint][1]}".split("?")[
            0
        ].replace("{id}", "{draft_id}")
        if draft_id:  # nothing happened to the draft
            async with db.sessions() as session:
                row = await session.get(DraftRecord, draft_id)
                assert row is not None and row.status == "pending_review"
            assert not await _events(db, entity_id=draft_id)


def _bad_tokens(tokens: Tokens) -> dict[str, dict[str, str]]:
    good = tokens.mint("admin", "mallory")
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), "ES256", headers=header)
    return {
        "no token": {},
        "not bearer": {"Authorization": "Basic YWRtaW46YWRtaW4="},
        "garbage": auth("not-a-jwt"),
        "bad signature": auth(forged),
        "expired": auth(tokens.mint("admin", "mallory", ttl_s=60, now=time.time() - 3600)),
        "wrong issuer": auth(tokens.mint("admin", "mallory", issuer="https://evil.example")),
        "wrong audience": auth(tokens.mint("admin", "mallory", audience="another-app")),
    }


BAD_TOKENS = [
    "no token",
    "not bearer",
    "garbage",
    "bad signature",
    "expired",
    "wrong issuer",
    "wrong audience",
]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("bad", BAD_TOKENS)
async def test_bad_tokens_are_401_and_audited(
    http: httpx.AsyncClient, db: Database, tokens: Tokens, bad: str, endpoint: str
) -> None:
    before = await _count(db, action="unauthenticated")
    response, draft_id = await _call(http, db, endpoint, _bad_tokens(tokens)[bad])
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    after = await _events(db, action="unauthenticated")
    assert await _count(db, action="unauthenticated") == before + 1
    newest = after[0]
    assert newest.actor == "anonymous" and newest.outcome == "failure"
    assert newest.details["reason"]
    if draft_id:
        assert draft_id in newest.details["path"]
        assert not await _events(db, entity_id=draft_id)


# --- review flows --------------------------------------------------------------------------


async def test_list_and_view_drafts(http: httpx.AsyncClient, db: Database, tokens: Tokens) -> None:
    accession = f"CT{uuid.uuid4().hex[:8]}"
    draft_id = await insert_pending(
        db, accession=accession, modality="CT", flags=[FLAG_LATERALITY], mrn="MRN-77"
    )
    headers = tokens.headers("radiologist", "dr-list")
    listed = (
        await http.get(
            "/api/drafts",
            params={"status": "pending_review", "modality": "CT", "max_age_hours": 1},
            headers=headers,
        )
    ).json()
    mine = [d for d in listed["items"] if d["id"] == draft_id]
    assert mine and mine[0]["label"] == "AI DRAFT — pending radiologist review"
    assert mine[0]["critical_flags"] == 1 and mine[0]["accession"] == accession
    assert all(d["modality"] == "CT" for d in listed["items"])
    paged = (await http.get("/api/drafts", params={"page_size": 1}, headers=headers)).json()
    assert len(paged["items"]) == 1 and paged["total"] >= 1 and paged["page_size"] == 1

    detail = (await http.get(f"/api/drafts/{draft_id}", headers=headers)).json()
    assert detail["findings"].startswith("Small right pleural effusion")
    assert detail["draft_text"] == "Small right pleural effusion."
    assert detail["safety_flags"][0]["kind"] == "laterality_conflict"
    assert detail["safety_flags"][0]["severity"] == "critical"
    assert detail["model_id"] and detail["adapter_id"] == "radiology"
    assert detail["source"]["source_format"] == "hl7v2" and detail["source"]["message_id"]
    viewed = await _events(db, action="viewed", entity_id=draft_id)
    assert viewed[0].patient_id == "MRN-77" and viewed[0].accession == accession

    assert (await http.get("/api/drafts/nope", headers=headers)).status_code == 404
    bad = await http.get("/api/drafts", params={"page_size": 1000}, headers=headers)
    assert bad.status_code == 422


async def test_approve_with_edit_publishes_final_report(
    http: httpx.AsyncClient,
    db: Database,
    tokens: Tokens,
    kafka: KafkaSettings,
    topics: TopicSettings,
    fhir_schema_path: Path,
) -> None:
    accession = f"XR{uuid.uuid4().hex[:8].upper()}"
    draft_id = await insert_pending(db, accession=accession, draft_text="Small left effusion.")
    headers = auth(tokens.mint("radiologist", "dr-kim", name="Sara Kim"))
    response = await http.post(
        f"/api/drafts/{draft_id}/approve",
        json={"impression": "Small right pleural effusion.", "expected_version": 1},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "edited" and result["edit_distance"] == 2  # left→right, +pleural
    assert result["published"] is True and result["reviewer"] == "dr-kim"

    again = await http.post(f"/api/drafts/{draft_id}/approve", json={}, headers=headers)
    assert again.status_code == 409

    hl7 = await consume_all(kafka, topics.hl7_out, key=accession.encode())
    assert len(hl7) == 1
    _, value, headers_out = hl7[0]
    assert headers_out["radgpt-report-status"] == b"final"
    final = parse_message(value)[0]
    assert final.status == "F" and final.accession == accession
    assert final.impression == "Small right pleural effusion."
    obr = next(s for s in value.decode().split("\r") if s.startswith("OBR|"))
    assert "dr-kim" in obr.split("|")[32]

    fhir = await consume_all(kafka, topics.fhir_out, key=accession.encode())
    bundle = json.loads(fhir[0][1])
    resources = [e["resource"] for e in bundle["entry"]]
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    assert report["status"] == "final" and report["resultsInterpreter"]
    provenance = next(r for r in resources if r["resourceType"] == "Provenance")
    roles = {a["type"]["coding"][0]["code"] for a in provenance["agent"]}
    assert "verifier" in roles
    schema = json.loads(fhir_schema_path.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(bundle)

    async with db.sessions() as session:
        row = await session.get(DraftRecord, draft_id)
        assert row is not None
        assert (row.draft_text, row.final_text) == (
            "Small left effusion.",
            "Small right pleural effusion.",
        )
        assert row.edit_distance == 2 and row.published_at is not None
    edited = await _events(db, action="edited", entity_id=draft_id)
    assert len(edited) == 1 and edited[0].details["edit_distance"] == 2
    assert {o["topic"] for o in edited[0].details["outputs"]} == {topics.hl7_out, topics.fhir_out}
    failed = await _events(db, action="approved", entity_id=draft_id, outcome="failure")
    assert len(failed) == 1  # the 409 attempt is on record too


async def test_concurrent_approvals_one_wins_over_http(
    server: ReviewServer,
    db: Database,
    tokens: Tokens,
    kafka: KafkaSettings,
    topics: TopicSettings,
) -> None:
    accession = f"RACE{uuid.uuid4().hex[:8].upper()}"
    draft_id = await insert_pending(db, accession=accession)
    headers = [tokens.headers("radiologist", f"dr-race-{i}") for i in range(6)]

    async def approve(h: dict[str, str]) -> int:
        async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as client:
            response = await client.post(f"/api/drafts/{draft_id}/approve", headers=h)
            return response.status_code

    codes = await asyncio.gather(*(approve(h) for h in headers))
    assert sorted(codes) == [200] + [409] * 5
    assert len(await _events(db, action="approved", entity_id=draft_id, outcome="success")) == 1
    finals = await consume_all(kafka, topics.hl7_out, key=accession.encode(), timeout_s=4, expect=2)
    assert len(finals) == 1


async def test_reject_flow(http: httpx.AsyncClient, db: Database, tokens: Tokens) -> None:
    draft_id = await insert_pending(db)
    headers = tokens.headers("admin", "head-of-radiology")
    missing = await http.post(f"/api/drafts/{draft_id}/reject", json={}, headers=headers)
    assert missing.status_code == 422
    wrong = await http.post(
        f"/api/drafts/{draft_id}/reject",
        json={"reason": "x", "category": "bogus"},
        headers=headers,
    )
    assert wrong.status_code == 422
    response = await http.post(
        f"/api/drafts/{draft_id}/reject",
        json={
            "reason": "Describes the left lung; findings are right-sided.",
            "category": "laterality",
        },
        headers=headers,
    )
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    view = (await http.get(f"/api/drafts/{draft_id}", headers=headers)).json()
    assert view["status"] == "rejected" and view["label"] == "rejected"
    assert view["reject_reason"].startswith("Describes the left lung")
    late = await http.post(f"/api/drafts/{draft_id}/approve", headers=headers)
    assert late.status_code == 409


# --- audit API -----------------------------------------------------------------------------


async def test_audit_query_filters_and_pages(
    http: httpx.AsyncClient, db: Database, tokens: Tokens
) -> None:
    accession = f"AUD{uuid.uuid4().hex[:8]}"
    draft_id = await insert_pending(db, accession=accession, mrn="MRN-AUD")
    dr = tokens.headers("radiologist", "dr-audit")
    await http.get(f"/api/drafts/{draft_id}", headers=dr)
    await http.get(f"/api/drafts/{draft_id}", headers=dr)
    await http.post(f"/api/drafts/{draft_id}/approve", headers=dr)
    officer = tokens.headers("compliance", "officer-1")

    page = (await http.get("/api/audit", params={"accession": accession}, headers=officer)).json()
    assert [r["action"] for r in page["items"]] == ["approved", "viewed", "viewed"]  # newest first
    ids = [r["id"] for r in page["items"]]
    assert ids == sorted(ids, reverse=True)
    assert all(r["patient_id"] == "MRN-AUD" for r in page["items"])

    by_patient = await http.get(
        "/api/audit", params={"patient_id": "MRN-AUD", "action": "viewed"}, headers=officer
    )
    assert by_patient.json()["total"] == 2
    by_actor = await http.get(
        "/api/audit", params={"actor": "dr-audit", "page_size": 1, "page": 2}, headers=officer
    )
    body = by_actor.json()
    assert body["total"] == 3 and len(body["items"]) == 1
    assert body["items"][0]["action"] == "viewed"

    first = page["items"][-1]["recorded_at"]
    windowed = await http.get(
        "/api/audit",
        params={"accession": accession, "since": first, "until": "2999-01-01T00:00:00Z"},
        headers=officer,
    )
    assert windowed.json()["total"] == 3
    empty = await http.get(
        "/api/audit",
        params={"accession": accession, "until": "2000-01-01T00:00:00Z"},
        headers=officer,
    )
    assert empty.json()["total"] == 0
    outcome = await http.get("/api/audit", params={"outcome": "nope"}, headers=officer)
    assert outcome.status_code == 422
    queried = await _events(db, actor="officer-1", action="queried")
    assert len(queried) == 5  # the 422 (invalid outcome) never ran a query
    assert any(q.details["filters"].get("patient_id") == "MRN-AUD" for q in queried)


async def test_audit_exports(
    http: httpx.AsyncClient, db: Database, tokens: Tokens, fhir_schema_path: Path
) -> None:
    accession = f"EXP{uuid.uuid4().hex[:8]}"
    draft_id = await insert_pending(db, accession=accession)
    await http.post(f"/api/drafts/{draft_id}/approve", headers=tokens.headers("radiologist"))
    officer = tokens.headers("compliance", "officer-exp")

    response = await http.get(
        "/api/audit/export", params={"format": "csv", "accession": accession}, headers=officer
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["action"] for r in rows] == ["approved"]
    assert rows[0]["accession"] == accession and len(rows[0]["row_hash"]) == 64

    everything = await http.get("/api/audit/export", params={"format": "fhir"}, headers=officer)
    assert everything.headers["content-type"].startswith("application/fhir+json")
    bundle = everything.json()
    schema = json.loads(fhir_schema_path.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(bundle)
    events = [e["resource"] for e in bundle["entry"]]
    assert len(events) >= 2
    assert {e["resourceType"] for e in events} == {"AuditEvent"}
    recorded = [e["recorded"] for e in events]
    assert recorded == sorted(recorded)  # chain order
    exported = await _events(db, actor="officer-exp", action="exported")
    assert {e.details["format"] for e in exported} == {"csv", "fhir"}
    bad = await http.get("/api/audit/export", params={"format": "xml"}, headers=officer)
    assert bad.status_code == 422


async def test_verify_endpoint(http: httpx.AsyncClient, db: Database, tokens: Tokens) -> None:
    response = await http.get("/api/audit/verify", headers=tokens.headers("compliance", "v-1"))
    body = response.json()
    assert body["ok"] is True and body["checked"] >= 1 and body["first_broken_id"] is None
    verified = await _events(db, actor="v-1", action="verified")
    assert verified[0].details["checked"] == body["checked"]


async def test_stats_and_me(http: httpx.AsyncClient, db: Database, tokens: Tokens) -> None:
    draft_id = await insert_pending(db, modality="MR", adapter_id="radiology-mr")
    dr = tokens.headers("radiologist", "dr-stats")
    await http.post(f"/api/drafts/{draft_id}/approve", headers=dr)
    stats = (await http.get("/api/stats", headers=dr)).json()
    mr = next(s for s in stats if s["modality"] == "MR" and s["adapter"] == "radiology-mr")
    assert mr["approved"] >= 1 and mr["acceptance_rate"] is not None
    assert stats[-1]["modality"] == "all"
    me = (await http.get("/api/me", headers=dr)).json()
    assert me == {
        "subject": "dr-stats",
        "name": "dr-stats",
        "roles": ["radiologist"],
        "permissions": ["review"],
    }


async def test_openapi_and_pages(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    for path in (
        "/api/drafts",
        "/api/drafts/{draft_id}",
        "/api/drafts/{draft_id}/approve",
        "/api/drafts/{draft_id}/reject",
        "/api/audit",
        "/api/audit/export",
        "/api/audit/verify",
    ):
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    assert {"ApproveRequest", "RejectRequest", "DraftDetail", "DraftPage", "AuditRow"} <= set(
        schemas
    )
    assert "/" not in spec["paths"]  # the pages are not API
    for page in ("/", "/audit", "/drafts/abc"):
        response = await http.get(page)
        assert response.status_code == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert "AI DRAFT — pending radiologist review" in response.text or page == "/audit"
    assert (await http.get("/static/app.js")).status_code == 200
    assert (await http.get("/static/../review.py")).status_code == 404
