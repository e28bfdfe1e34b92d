"""Signed checkpoints of the audit chain's head, kept outside the database.

The hash chain (:mod:`integration.audit.log`) shows an edited or deleted row -- unless whoever
edits also re-hashes every later row, or deletes only the newest rows.  A *checkpoint*
anchors the head: ``{head_id, head_hash, count, taken_at}`` signed with HMAC-SHA256 under a
key the database administrator does not hold (``RADGPT_AUDIT__CHECKPOINT_KEY``), appended as
one JSON line to a file the database administrator cannot rewrite (an append-only or
object-locked volume; ``audit.checkpoint_path``).  ``radgpt serve`` appends one every
``audit.checkpoint_interval_s``; ``radgpt audit checkpoint`` appends one now.

:func:`verify_checkpoints` then checks, for every checkpoint: its signature; that row
``head_id`` still exists (a truncated tail fails here); that its ``row_hash`` is still
``head_hash`` (a rewritten and re-hashed chain fails here); and that exactly ``count`` rows
have ids up to ``head_id`` (deleted and re-chained rows fail here).
``radgpt audit verify --checkpoint FILE`` runs it after the chain walk.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from integration.audit.log import GENESIS_HASH
from integration.storage.db import AuditEntry, utcnow

__all__ = [
    "Checkpoint",
    "CheckpointReport",
    "append_checkpoint",
    "read_checkpoints",
    "take_checkpoint",
    "verify_checkpoints",
]


class Checkpoint(BaseModel):
    """One signed statement of the chain's head."""

    head_id: int
    head_hash: str
    count: int
    taken_at: datetime
    signature: str = ""

    def payload(self) -> bytes:
        fields = {
            "head_id": self.head_id,
            "head_hash": self.head_hash,
            "count": self.count,
            "taken_at": self.taken_at.isoformat(),
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def signed(self, key: bytes) -> Checkpoint:
        digest = hmac.new(key, self.payload(), hashlib.sha256).hexdigest()
        return self.model_copy(update={"signature": digest})

    def signature_ok(self, key: bytes) -> bool:
        expected = hmac.new(key, self.payload(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.signature)


@dataclass(frozen=True)
class CheckpointReport:
    ok: bool
    checked: int
    reason: str | None = None
    head_id: int | None = None


async def take_checkpoint(session: AsyncSession, key: bytes) -> Checkpoint:
    """The signed head of the chain now (an empty log: id 0 and the genesis hash)."""
    head = (
        await session.execute(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1))
    ).scalar_one_or_none()
    count = (await session.execute(select(func.count(AuditEntry.id)))).scalar_one()
    checkpoint = Checkpoint(
        head_id=head.id if head else 0,
        head_hash=head.row_hash if head else GENESIS_HASH,
        count=int(count),
        taken_at=utcnow(),
    )
    return checkpoint.signed(key)


def append_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Append one JSON line and flush it to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(checkpoint.model_dump_json() + "\n")
        out.flush()
        os.fsync(out.fileno())


def read_checkpoints(path: Path) -> list[Checkpoint]:
    """Every checkpoint in ``path``; :class:`ValueError` names a malformed line."""
    checkpoints: list[Checkpoint] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            checkpoints.append(Checkpoint.model_validate_json(line))
        except ValidationError as exc:
            raise ValueError(f"{path}:{number}: not a checkpoint") from exc
    return checkpoints


async def verify_checkpoints(
    session: AsyncSession, checkpoints: Sequence[Checkpoint], key: bytes
) -> CheckpointReport:
    """Check the database against every checkpoint (see the module docstring)."""
    if not checkpoints:
        return CheckpointReport(False, 0, "no checkpoints to verify against")
    for checked, cp in enumerate(checkpoints):
        if not cp.signature_ok(key):
            return CheckpointReport(
                False, checked, "checkpoint signature does not match (wrong key or edited)",
                cp.head_id,
            )  # fmt: skip
        if cp.head_id == 0:
            continue
        row_hash = (
            await session.execute(select(AuditEntry.row_hash).where(AuditEntry.id == cp.head_id))
        ).scalar_one_or_none()
        if row_hash is None:
            return CheckpointReport(
                False, checked, f"event #{cp.head_id} of a checkpoint is gone (tail truncated)",
                cp.head_id,
            )  # fmt: skip
        if row_hash != cp.head_hash:
            return CheckpointReport(
                False, checked, f"event #{cp.head_id} no longer has the checkpoint's hash "
                "(chain rewritten)", cp.head_id,
            )  # fmt: skip
        count = (
            await session.execute(
                select(func.count(AuditEntry.id)).where(AuditEntry.id <= cp.head_id)
            )
        ).scalar_one()
        if int(count) != cp.count:
            return CheckpointReport(
                False, checked, f"{cp.count} events up to #{cp.head_id} were checkpointed, "
                f"{count} are stored (events deleted)", cp.head_id,
            )  # fmt: skip
    return CheckpointReport(True, len(checkpoints), head_id=checkpoints[-1].head_id)
