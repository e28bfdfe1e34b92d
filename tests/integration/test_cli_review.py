"""``radgpt audit query|export|verify``, ``dev-token`` and ``stats`` as a user runs them."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import jsonschema
import pytest
from review_helpers import insert_pending
from sqlalchemy import text

from integration.audit.log import AuditFilters, query_events
from integration.review.auth import TokenVerifier
from integration.review.workflow import Reviewer, approve_draft, reject_draft
from integration.storage.db import Database

REPO = Path(__file__).resolve().parents[2]


def radgpt(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RADGPT_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "integration", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=full_env,
        timeout=120,
    )


def _url(database: Database) -> str:
    return database.engine.url.render_as_string(hide_password=False)


async def _activity(database: Database) -> list[str]:
    """Three drafts: one approved as is, one edited, one rejected."""
    dr = Reviewer(subject="dr-cli", role="radiologist")
    ids = [
        await insert_pending(database, accession=f"CLI-{i}", mrn=f"MRN-{i}", modality="CT")
        for i in range(3)
    ]
    async with database.sessions() as session:
        await approve_draft(session, draft_id=ids[0], reviewer=dr, publisher=None)
    async with database.sessions() as session:
        await approve_draft(
            session,
            draft_id=ids[1],
            reviewer=dr,
            impression="Moderate right pleural effusion.",
            publisher=None,
        )
    async with database.sessions() as session:
        await reject_draft(session, draft_id=ids[2], reviewer=dr, reason="wrong study")
    return ids


async def test_audit_query_json_and_table(database: Database) -> None:
    await _activity(database)
    url = _url(database)
    out = radgpt("audit", "query", "--json", "--action", "approved", "--database-url", url)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["total"] == 1 and body["items"][0]["accession"] == "CLI-0"
    # Settings (RADGPT_DATABASE__URL) work the same; filters combine; newest first.
    out = radgpt(
        "audit", "query", "--json", "--by", "dr-cli", "--patient-id", "MRN-2",
        env={"RADGPT_DATABASE__URL": url},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert [i["action"] for i in json.loads(out.stdout)["items"]] == ["rejected"]
    table = radgpt(
        "audit", "query", "--since", "2000-01-01", "--database-url", url, "--actor", "ann"
    )
    assert table.returncode == 0 and "audit log" in table.stdout and "edited" in table.stdout
    async with database.sessions() as session:
        queried = await query_events(session, AuditFilters(action="queried"))
    assert queried.total == 3
    assert {e.actor_role for e in queried.items} == {"cli"}
    assert any(e.actor == "ann" for e in queried.items)
    # Beside any --actor claim: the OS user and host that really ran the command.
    import getpass
    import socket

    claimed = next(e for e in queried.items if e.actor == "ann")
    assert claimed.details["actor_claimed"] is True
    assert claimed.details["os_user"] == getpass.getuser()
    assert claimed.details["host"] == socket.gethostname()
    unclaimed = [e for e in queried.items if e.actor != "ann"]
    assert all(e.details["actor_claimed"] is False for e in unclaimed)
    assert all(e.actor == f"cli:{getpass.getuser()}" for e in unclaimed)


async def test_audit_export_csv_and_fhir(
    database: Database, tmp_path: Path, fhir_schema_path: Path
) -> None:
    await _activity(database)
    url = _url(database)
    csv_path = tmp_path / "out" / "audit.csv"
    out = radgpt(
        "audit", "export", "--format", "csv", "--out", str(csv_path), "--database-url", url
    )
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert [r["action"] for r in rows] == ["approved", "edited", "rejected"]
    assert csv_path.stat().st_mode & 0o777 == 0o600  # exports hold PHI: owner only
    if database.dialect == "sqlite":
        db_file = Path(database.engine.url.database or "")
        assert db_file.stat().st_mode & 0o777 == 0o600
    fhir_path = tmp_path / "audit.json"
    out = radgpt(
        "audit", "export", "-f", "fhir", "-o", str(fhir_path), "--accession", "CLI-1",
        "--database-url", url,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    bundle = json.loads(fhir_path.read_text())
    schema = json.loads(fhir_schema_path.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(bundle)
    assert [e["resource"]["subtype"][1]["code"] for e in bundle["entry"]] == ["edited"]
    async with database.sessions() as session:
        exported = await query_events(session, AuditFilters(action="exported"))
    assert sorted(e.details["format"] for e in exported.items) == ["csv", "fhir"]
    csv_path.chmod(0o644)  # an existing file is made private again when overwritten
    again = radgpt(
        "audit", "export", "--format", "csv", "--out", str(csv_path), "--database-url", url
    )
    assert again.returncode == 0, again.stderr
    assert csv_path.stat().st_mode & 0o777 == 0o600


async def _tamper(database: Database, sql: str) -> None:
    if database.dialect == "postgresql":
        # A rogue DBA: the superuser switches the append-only trigger off first.
        conn = await asyncpg.connect(_url(database).replace("postgresql+asyncpg", "postgresql"))
        try:
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            await conn.execute(sql)
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
        finally:
            await conn.close()
    else:
        async with database.engine.begin() as conn:
            await conn.execute(text(sql))


async def test_audit_verify_catches_an_edited_row(database: Database) -> None:
    await _activity(database)
    url = _url(database)
    ok = radgpt("audit", "verify", "--database-url", url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("audit chain OK")
    async with database.sessions() as session:
        target = (await query_events(session, AuditFilters(action="edited"))).items[0].id
    await _tamper(database, f"UPDATE audit_log SET actor = 'someone-else' WHERE id = {target}")
    broken = radgpt("audit", "verify", "--database-url", url)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"BROKEN at event #{target}" in broken.stdout
    assert "modified" in broken.stdout
    async with database.sessions() as session:
        verified = await query_events(session, AuditFilters(action="verified"))
    assert [e.outcome for e in verified.items] == ["failure", "success"]


async def test_audit_verify_catches_a_deleted_row(database: Database) -> None:
    await _activity(database)
    async with database.sessions() as session:
        target = (await query_events(session, AuditFilters(action="approved"))).items[0].id
    await _tamper(database, f"DELETE FROM audit_log WHERE id = {target}")
    broken = radgpt("audit", "verify", "--database-url", _url(database))
    assert broken.returncode == 1
    assert "deleted or reordered" in broken.stdout


async def test_stats_json(database: Database) -> None:
    await _activity(database)
    out = radgpt("stats", "--json", "--database-url", _url(database))
    assert out.returncode == 0, out.stderr
    stats = {(s["modality"], s["adapter"]): s for s in json.loads(out.stdout)}
    ct = stats[("CT", "radiology")]
    assert (ct["reviewed"], ct["approved"], ct["edited"], ct["rejected"]) == (3, 1, 1, 1)
    assert ct["acceptance_rate"] == pytest.approx(1 / 3)
    assert ct["mean_edit_distance"] == pytest.approx(0.5)  # 0 and 1 word
    assert ct["mean_time_to_approve_s"] is not None and ct["mean_time_to_approve_s"] >= 0
    table = radgpt("stats", "--database-url", _url(database))
    assert "review quality" in table.stdout and "33.3%" in table.stdout


async def test_dev_token_is_trusted_only_when_configured(tmp_path: Path) -> None:
    key = tmp_path / "dev-key.pem"
    out = radgpt("dev-token", "--role", "compliance", "--sub", "officer", "--ttl", "600",
                 env={"RADGPT_AUTH__DEV_KEY_PATH": str(key)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "TRUST_DEV_KEY" in out.stderr
    token = out.stdout.strip()
    verifier = TokenVerifier(issuer="radgpt-dev", audience="radgpt", dev_key_path=key)
    principal = await verifier.verify(token)
    assert principal.subject == "officer" and {r.value for r in principal.roles} == {"compliance"}


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["dev-token", "--role", "surgeon", "--sub", "x"], {}, "unknown role"),
        (
            ["dev-token", "--role", "admin", "--sub", "x"],
            {"RADGPT_ENVIRONMENT": "production"},
            "environment=local",
        ),
        (["audit", "query", "--since", "yesterday"], {}, "ISO 8601"),
        (["audit", "query", "--action", "deleted"], {}, "unknown action"),
        (["audit", "export", "--format", "xml", "--out", "x"], {}, "xml"),
    ],
)
def test_bad_input_is_one_line_error(args: list[str], env: dict[str, str], message: str) -> None:
    out = radgpt(*args, env=env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_audit_commands_refuse_a_database_file_that_does_not_exist(tmp_path: Path) -> None:
    """Was: an empty file created and exit 1, the same code as a broken chain."""
    missing = tmp_path / "typo" / "radgpt.db"
    url = f"sqlite+aiosqlite:///{missing}"
    for args in (("audit", "verify"), ("audit", "query")):
        result = radgpt(*args, "--database-url", url)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr == (
            f"error: no such database file: {missing} "
            "(check --database-url or RADGPT_DATABASE__URL)\n"
        )
    result = radgpt("audit", "verify", env={"RADGPT_DATABASE__URL": f"sqlite:///{missing}"})
    assert result.returncode == 2
    assert not missing.exists() and not missing.parent.exists()
