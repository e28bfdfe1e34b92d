"""Logging set-up that keeps patient data out of the logs at DEBUG.

radgpt's own loggers never print report text or patient identifiers.  Some third-party
libraries do at DEBUG: aiokafka logs whole records, asyncpg and SQLAlchemy log statement
parameters, httpx/httpcore log request bodies.  :func:`configure_logging` (called once by
the entry point with ``Settings.log_level`` and ``Settings.log_unsafe_payloads``) caps those
loggers at INFO unless ``RADGPT_LOG_UNSAFE_PAYLOADS=true`` says otherwise.
"""

from __future__ import annotations

import logging

__all__ = ["PAYLOAD_LOGGERS", "configure_logging"]

# Loggers that may print message values or SQL parameters below INFO.
PAYLOAD_LOGGERS = (
    "aiokafka",
    "kafka",
    "asyncpg",
    "sqlalchemy",
    "aiosqlite",
    "httpx",
    "httpcore",
    "huggingface_hub",
    "hl7apy",
    "uvicorn",
    "fastapi",
)


def configure_logging(level: str | int, *, unsafe_payloads: bool = False) -> None:
    """Set the root level; cap :data:`PAYLOAD_LOGGERS` at INFO unless ``unsafe_payloads``."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    logging.getLogger().setLevel(numeric)
    for name in PAYLOAD_LOGGERS:
        logger = logging.getLogger(name)
        if unsafe_payloads:
            logger.setLevel(logging.NOTSET)
        else:
            logger.setLevel(max(logging.INFO, numeric))
    if unsafe_payloads and numeric < logging.INFO:
        logging.getLogger(__name__).warning(
            "log_unsafe_payloads is on: third-party DEBUG logs may contain patient data"
        )
