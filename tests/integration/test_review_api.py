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

from integration.app.settings import KafkaSettings, TopicSettings
from integration.audit.log import AuditFilters, query_events
from integration.codecs.codec import parse_message
from integration.storage.db import Database, DraftRecord


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
    assert detail["method"] == "model"
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


# --- safe sign-off, context, queue order, accounting (issue 13) ------------------------------


async def test_critical_flags_must_be_acknowledged_and_text_must_be_what_was_reviewed(
    http: httpx.AsyncClient, db: Database, tokens: Tokens, kafka: KafkaSettings,
    topics: TopicSettings,
) -> None:  # fmt: skip
    from integration.review.workflow import ATTESTATION, text_sha256

    accession = f"CR{uuid.uuid4().hex[:8].upper()}"
    draft_id = await insert_pending(
        db, accession=accession, draft_text="Small left pleural effusion.",
        flags=[FLAG_LATERALITY], mrn="MRN-ACK",
    )  # fmt: skip
    dr = tokens.headers("radiologist", "dr-ack")
    detail = (await http.get(f"/api/drafts/{draft_id}", headers=dr)).json()
    assert detail["draft_sha256"] == text_sha256("Small left pleural effusion.")
    assert detail["attestation"] == ATTESTATION
    assert detail["patient"] == {
        "name": "HOLLOWAY, DENISE", "birth_date": "1958-03-22", "age_years": 66, "sex": "female",
    }  # fmt: skip
    assert detail["ordering_provider"] == "ANIL PATEL"
    flag = detail["safety_flags"][0]
    assert flag["index"] == 0
    findings_spans = [e for e in flag["evidence"] if e["text"] == "findings"]
    assert findings_spans, flag
    span = findings_spans[0]
    assert detail["findings"][span["start"] : span["end"]].lower() == "pleural effusion"

    url = f"/api/drafts/{draft_id}/approve"
    refused = await http.post(url, json={"impression": "Small right pleural effusion."}, headers=dr)
    assert refused.status_code == 422 and "acknowledge" in refused.json()["detail"]
    stale = await http.post(
        url,
        json={"acknowledged_flags": [0], "draft_sha256": "0" * 64},
        headers=dr,
    )
    assert stale.status_code == 409
    mismatch = await http.post(
        url,
        json={
            "impression": "Small right pleural effusion.",
            "acknowledged_flags": [0],
            "impression_sha256": text_sha256("Small left pleural effusion."),
        },
        headers=dr,
    )
    assert mismatch.status_code == 409 and "not the text you reviewed" in mismatch.json()["detail"]
    row = await _draft_row(db, draft_id)
    assert row.status == "pending_review"  # nothing was published or changed

    communicated = await http.post(
        f"/api/drafts/{draft_id}/communications",
        json={"recipient": "Dr Lee, ED", "method": "telephone",
              "communicated_at": "2024-05-12T09:05:00+00:00"},
        headers=dr,
    )  # fmt: skip
    assert communicated.status_code == 200, communicated.text
    bad_method = await http.post(
        f"/api/drafts/{draft_id}/communications",
        json={"recipient": "x", "method": "pigeon", "communicated_at": "2024-05-12T09:05:00Z"},
        headers=dr,
    )
    assert bad_method.status_code == 422
    text = "Small right pleural effusion."
    ok = await http.post(
        url,
        json={
            "impression": text,
            "acknowledged_flags": [0],
            "attested": True,
            "draft_sha256": detail["draft_sha256"],
            "impression_sha256": text_sha256(text),
            "expected_version": detail["version"],
        },
        headers=dr,
    )
    assert ok.status_code == 200, ok.text
    event = (await _events(db, entity_id=draft_id, action="edited"))[0]
    assert event.details["acknowledged_flags"] == [{"index": 0, "kind": "laterality_conflict"}]
    assert event.details["attestation"] == ATTESTATION and event.details["communications"] == 1
    comm = (await _events(db, entity_id=draft_id, action="communicated"))[0]
    assert comm.patient_id == "MRN-ACK" and comm.details["recipient"] == "Dr Lee, ED"
    raw_final = (await consume_all(kafka, topics.hl7_out, key=accession.encode()))[0][1]
    final = parse_message(raw_final)
    assert final[0].impression is not None
    assert final[0].impression.startswith("Small right pleural effusion.")
    # the communication is written into the final report's impression OBX; a reader files
    # such a line under sign_off (it is not part of the clinical impression)
    line = "Critical result communicated to Dr Lee, ED by telephone"
    assert line.encode() in raw_final
    assert any(s.startswith(line) for s in final[0].sign_off), final[0].sign_off
    assert (await _draft_row(db, draft_id)).final_text == text  # the radiologist's own text
    late = await http.post(
        f"/api/drafts/{draft_id}/communications",
        json={"recipient": "Dr Lee", "method": "page", "communicated_at": "2024-05-12T09:05:00Z"},
        headers=dr,
    )
    assert late.status_code == 409


async def _draft_row(db: Database, draft_id: str) -> DraftRecord:
    async with db.sessions() as session:
        row = await session.get(DraftRecord, draft_id)
    assert row is not None
    return row


async def test_queue_puts_critical_then_stat_first_and_filters(
    http: httpx.AsyncClient, db: Database, tokens: Tokens
) -> None:
    from review_helpers import report_for

    modality = f"Q{uuid.uuid4().hex[:6].upper()}"

    async def add(priority: str, flags: list[Any]) -> str:
        accession = f"Q{uuid.uuid4().hex[:9].upper()}"
        report = report_for(
            accession, "MRN-Q", "Small right pleural effusion.", modality=modality,
            priority=priority,
        )  # fmt: skip
        return await insert_pending(db, accession=accession, report=report, flags=flags)

    routine = await add("R", [])  # oldest
    none = await add("", [])
    stat = await add("S", [])
    asap = await add("A", [])
    critical = await add("R", [FLAG_LATERALITY])  # newest, routine, but a critical flag
    dr = tokens.headers("radiologist", "dr-queue")
    page = (await http.get("/api/drafts", params={"modality": modality}, headers=dr)).json()
    assert [d["id"] for d in page["items"]] == [critical, stat, asap, routine, none]
    assert [d["priority"] for d in page["items"]] == ["routine", "stat", "asap", "routine", None]
    assert page["items"][0]["patient_name"] == "HOLLOWAY, DENISE"
    only_stat = await http.get(
        "/api/drafts", params={"modality": modality, "priority": "stat"}, headers=dr
    )
    assert [d["id"] for d in only_stat.json()["items"]] == [stat]
    flagged = await http.get(
        "/api/drafts", params={"modality": modality, "flag": "critical"}, headers=dr
    )
    assert [d["id"] for d in flagged.json()["items"]] == [critical]
    unflagged = await http.get(
        "/api/drafts", params={"modality": modality, "flag": "none"}, headers=dr
    )
    assert critical not in {d["id"] for d in unflagged.json()["items"]}
    assert len(unflagged.json()["items"]) == 4


async def test_listed_events_carry_each_patient_and_audit_search_uses_the_body(
    http: httpx.AsyncClient, db: Database, tokens: Tokens
) -> None:
    modality = f"L{uuid.uuid4().hex[:6].upper()}"
    mrn_a, mrn_b = f"MRN-A{uuid.uuid4().hex[:6]}", f"MRN-B{uuid.uuid4().hex[:6]}"
    a1 = await insert_pending(db, mrn=mrn_a, modality=modality)
    a2 = await insert_pending(db, mrn=mrn_a, modality=modality)
    b1 = await insert_pending(db, mrn=mrn_b, modality=modality)
    dr = tokens.headers("radiologist", f"dr-list-{modality}")
    await http.get("/api/drafts", params={"modality": modality}, headers=dr)
    listed = await _events(db, action="listed", actor=f"dr-list-{modality}")
    by_patient = {e.patient_id: set(e.details["draft_ids"]) for e in listed}
    assert by_patient == {mrn_a: {a1, a2}, mrn_b: {b1}}
    await http.get(f"/api/drafts/{a1}", headers=dr)  # a prior report: a2 is the same patient
    viewed = (await _events(db, action="viewed", entity_id=a1))[0]
    assert viewed.details["prior_draft_ids"] == [a2]

    officer = tokens.headers("compliance", "officer-post")
    search = await http.post(
        "/api/audit/search", json={"patient_id": mrn_a, "page_size": 50}, headers=officer
    )
    assert search.status_code == 200, search.text
    body = search.json()
    assert [r["action"] for r in body["items"]] == ["listed", "viewed"]  # oldest first
    assert {r["patient_id"] for r in body["items"]} == {mrn_a}
    newest = await http.post(
        "/api/audit/search", json={"patient_id": mrn_a, "oldest_first": False}, headers=officer
    )
    assert [r["action"] for r in newest.json()["items"]] == ["viewed", "listed"]
    unknown = await http.post("/api/audit/search", json={"patient": mrn_a}, headers=officer)
    assert unknown.status_code == 422  # no silently ignored filter
    export = await http.post(
        "/api/audit/export", json={"patient_id": mrn_a, "format": "csv"}, headers=officer
    )
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["action"] for r in rows] == ["listed", "viewed"]
    queried = await _events(db, actor="officer-post", action="queried")
    assert queried[0].details["filters"]["patient_id"] == mrn_a
    assert all("patient" not in str(e.details.get("path", "")) for e in queried)


async def test_an_extractive_fallback_says_so_in_the_draft_detail(
    http: httpx.AsyncClient, db: Database, tokens: Tokens
) -> None:
    draft_id = await insert_pending(
        db, draft_text="Small right pleural effusion.", method="extractive-fallback"
    )
    headers = tokens.headers("radiologist", "dr-fallback")
    detail = (await http.get(f"/api/drafts/{draft_id}", headers=headers)).json()
    assert detail["method"] == "extractive-fallback"
