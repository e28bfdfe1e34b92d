"""Initial schema: inbound_messages, drafts, audit_log (append-only on PostgreSQL).

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION radgpt_audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% rejected)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""
_APPEND_ONLY_TRIGGER = """
CREATE TRIGGER audit_log_append_only
BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION radgpt_audit_log_append_only()
"""


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("source_key", sa.String(512), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("source_format", sa.String(16), nullable=True),
        sa.Column("raw_sha256", sa.String(64), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("error", sa.String(512), nullable=True),
        sa.UniqueConstraint("source_key", name="uq_inbound_messages_source_key"),
    )
    op.create_table(
        "drafts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "inbound_id", sa.String(36), sa.ForeignKey("inbound_messages.id"), nullable=False
        ),
        sa.Column("report_key", sa.String(600), nullable=False),
        sa.Column("accession", sa.String(128), nullable=True),
        sa.Column("patient_id", sa.String(128), nullable=True),
        sa.Column("modality", sa.String(32), nullable=True),
        sa.Column("procedure_code", sa.String(64), nullable=True),
        sa.Column("procedure_display", sa.String(255), nullable=True),
        sa.Column("findings", sa.Text, nullable=False),
        sa.Column("findings_hash", sa.String(64), nullable=False),
        sa.Column("report_json", _JSON, nullable=False),
        sa.Column("draft_text", sa.Text, nullable=False),
        sa.Column("safety_flags", _JSON, nullable=False),
        sa.Column("model_id", sa.String(255), nullable=False),
        sa.Column("adapter_id", sa.String(255), nullable=True),
        sa.Column("adapter_version", sa.String(128), nullable=True),
        sa.Column("prompt_tokens", sa.Integer, nullable=True),
        sa.Column("generated_tokens", sa.Integer, nullable=True),
        sa.Column("latency_ms", sa.Integer, nullable=True),
        sa.Column("finish_reason", sa.String(32), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("final_text", sa.Text, nullable=True),
        sa.Column("edit_distance", sa.Integer, nullable=True),
        sa.Column("reviewer", sa.String(255), nullable=True),
        sa.Column("reviewed_at", _TS, nullable=True),
        sa.Column("reject_reason", sa.Text, nullable=True),
        sa.Column("review_source", sa.String(16), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("published_at", _TS, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.UniqueConstraint("report_key", name="uq_drafts_report_key"),
        sa.UniqueConstraint("accession", "findings_hash", name="uq_drafts_accession_findings"),
    )
    op.create_index("ix_drafts_inbound_id", "drafts", ["inbound_id"])
    op.create_index("ix_drafts_accession", "drafts", ["accession"])
    op.create_index("ix_drafts_patient_id", "drafts", ["patient_id"])
    op.create_index("ix_drafts_status_created", "drafts", ["status", "created_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column("recorded_at", _TS, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("actor_role", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(600), nullable=False),
        sa.Column("accession", sa.String(128), nullable=True),
        sa.Column("patient_id", sa.String(128), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("details", _JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("row_hash", name="uq_audit_log_row_hash"),
    )
    op.create_index("ix_audit_log_recorded_at", "audit_log", ["recorded_at"])
    op.create_index("ix_audit_log_entity", "audit_log", ["entity_type", "entity_id"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.create_index("ix_audit_log_accession", "audit_log", ["accession"])
    op.create_index("ix_audit_log_patient_id", "audit_log", ["patient_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_APPEND_ONLY_FUNCTION)
        op.execute(_APPEND_ONLY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS radgpt_audit_log_append_only()")
    op.drop_table("audit_log")
    op.drop_table("drafts")
    op.drop_table("inbound_messages")
