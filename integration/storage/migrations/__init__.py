"""Alembic migrations of the service database (run by ``radgpt db upgrade``)."""
