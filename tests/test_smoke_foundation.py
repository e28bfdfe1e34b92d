"""The foundation: CLI entry point and error contract, settings, package surfaces."""

from __future__ import annotations

import subprocess
import sys

from integration.app.settings import Settings


def test_cli_help_lists_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "integration", "--help"], capture_output=True, text=True, check=True
    )
    assert "radgpt" in out.stdout.lower() or "Usage" in out.stdout


def test_cli_unknown_command_is_one_line_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "integration", "no-such-command"], capture_output=True, text=True
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in out.stderr


def test_settings_nested_env(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RADGPT_KAFKA__BOOTSTRAP_SERVERS", "kafka-0:9093")
    monkeypatch.setenv("RADGPT_DATABASE__URL", "postgresql+asyncpg://u:secret@db/radgpt")
    monkeypatch.setenv("RADGPT_KAFKA__TOPICS__HL7_IN", "ris.oru")
    s = Settings()
    assert s.kafka.bootstrap_servers == "kafka-0:9093"
    assert s.kafka.topics.hl7_in == "ris.oru"
    assert "secret" not in repr(s)
    assert s.database.url.get_secret_value().endswith("@db/radgpt")


def test_database_url_gets_the_async_driver() -> None:
    from integration.app.settings import DatabaseSettings

    for plain in ("postgresql://u:p@db:5432/radgpt", "postgres://u:p@db:5432/radgpt"):
        url = DatabaseSettings.model_validate({"url": plain}).url.get_secret_value()
        assert url == "postgresql+asyncpg://u:p@db:5432/radgpt"
    sqlite = DatabaseSettings.model_validate({"url": "sqlite:///x.db"}).url.get_secret_value()
    assert sqlite == "sqlite+aiosqlite:///x.db"
    keep = "postgresql+asyncpg://u@db/x"
    assert DatabaseSettings.model_validate({"url": keep}).url.get_secret_value() == keep
