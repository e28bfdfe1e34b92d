"""``radgpt serve`` appends signed audit checkpoints while it runs (audit.checkpoint_*)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import SecretStr

from integration.app.service import serve
from integration.app.settings import AuditSettings
from integration.audit.checkpoint import read_checkpoints, verify_checkpoints
from integration.storage.db import Database

from .conftest import ModelServer, make_settings


async def test_serve_appends_verifiable_checkpoints(
    db_url: str, kafka_broker: str, model_server: ModelServer, migrated: Database, tmp_path: Path
) -> None:
    path = tmp_path / "anchors" / "checkpoints.jsonl"
    settings = make_settings(kafka_broker, db_url, model_server.url).model_copy(
        update={
            "audit": AuditSettings(
                checkpoint_path=path, checkpoint_key=SecretStr("k"), checkpoint_interval_s=0.2
            )
        }
    )
    stop, started = asyncio.Event(), asyncio.Event()
    service = asyncio.create_task(
        serve(settings, migrate=False, stop=stop, on_started=lambda *_: started.set())
    )
    await asyncio.wait_for(started.wait(), 60)
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.wait_for(service, 60)
    checkpoints = read_checkpoints(path)
    assert len(checkpoints) >= 3
    async with migrated.sessions() as session:
        report = await verify_checkpoints(session, checkpoints, b"k")
    assert report.ok, report.reason
