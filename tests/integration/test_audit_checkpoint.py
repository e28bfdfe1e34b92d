"""``radgpt audit checkpoint`` / ``audit verify --checkpoint``: a signed head kept outside the
database catches what the chain alone cannot -- a re-hashed rewrite and a truncated tail."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from test_cli_review import _activity, _tamper, _url, radgpt

from integration.audit.log import compute_row_hash
from integration.storage.db import AuditEntry, Database

KEY = {"RADGPT_AUDIT__CHECKPOINT_KEY": "kept-by-the-compliance-office"}


def _checkpoint(database: Database, path: Path) -> None:
    taken = radgpt("audit", "checkpoint", "--out", str(path), "--database-url", _url(database),
                   env=KEY)  # fmt: skip
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.startswith("checkpoint: event #")


def _verify(database: Database, path: Path, env: dict[str, str] = KEY) -> tuple[int, str]:
    done = radgpt("audit", "verify", "--database-url", _url(database), "--checkpoint", str(path),
                  env=env)  # fmt: skip
    return done.returncode, done.stdout + done.stderr


async def _rows(database: Database) -> list[AuditEntry]:
    async with database.sessions() as session:
        return list((await session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars())


async def test_untouched_log_matches_its_checkpoints(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    await _activity(database)
    _checkpoint(database, path)
    grown = radgpt("audit", "verify", "--database-url", _url(database))  # appends "verified"
    assert grown.returncode == 0  # the log grows after a checkpoint: still fine
    _checkpoint(database, path)
    code, out = _verify(database, path)
    assert code == 0, out
    assert "checkpoints OK: 2 verified" in out


async def test_a_truncated_tail_is_caught(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    await _activity(database)
    _checkpoint(database, path)
    head = (await _rows(database))[-1].id
    await _tamper(database, f"DELETE FROM audit_log WHERE id >= {head - 1}")
    plain = radgpt("audit", "verify", "--database-url", _url(database))
    assert plain.returncode == 0, "the chain alone cannot see a truncated tail"
    code, out = _verify(database, path)
    assert code == 1, out
    assert f"event #{head} of a checkpoint is gone (tail truncated)" in out


async def test_a_rewritten_and_rehashed_chain_is_caught(
    database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "checkpoints.jsonl"
    await _activity(database)
    _checkpoint(database, path)
    rows = await _rows(database)
    target = next(r for r in rows if r.action == "edited")
    prev = next(r.row_hash for r in reversed(rows) if r.id < target.id)
    for row in (r for r in rows if r.id >= target.id):  # re-hash from the edited row on
        actor = "someone-else" if row.id == target.id else row.actor
        new_hash = compute_row_hash(
            recorded_at=row.recorded_at, actor=actor, actor_role=row.actor_role,
            action=row.action, entity_type=row.entity_type, entity_id=row.entity_id,
            accession=row.accession, patient_id=row.patient_id, outcome=row.outcome,
            details=row.details, prev_hash=prev,
        )  # fmt: skip
        await _tamper(
            database,
            f"UPDATE audit_log SET actor = '{actor}', prev_hash = '{prev}', "
            f"row_hash = '{new_hash}' WHERE id = {row.id}",
        )
        prev = new_hash
    plain = radgpt("audit", "verify", "--database-url", _url(database))
    assert plain.returncode == 0, "a re-hashed chain verifies on its own"
    code, out = _verify(database, path)
    assert code == 1, out
    assert "no longer has the checkpoint's hash (chain rewritten)" in out


async def test_a_wrong_key_or_a_missing_one_is_refused(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    await _activity(database)
    _checkpoint(database, path)
    code, out = _verify(database, path, env={"RADGPT_AUDIT__CHECKPOINT_KEY": "forged"})
    assert code == 1 and "signature does not match" in out
    code, out = _verify(database, path, env={})
    assert code == 2 and out.strip() == "error: RADGPT_AUDIT__CHECKPOINT_KEY is not set"
