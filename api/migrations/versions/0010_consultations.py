"""Consultations: the office's list of households, proposals put to them,
and one answer per household.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 20:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "households",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("compound_id", sa.String(32), nullable=False),
        sa.Column("building", sa.String(16), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("flat", sa.String(16), nullable=False),
        sa.Column("phones", Json, nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["compound_id"], ["compounds.id"], name=op.f("fk_households_compound_id_compounds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_households")),
        sa.UniqueConstraint(
            "compound_id", "building", "unit", "flat",
            name=op.f("uq_households_compound_id_building_unit_flat"),
        ),
    )  # fmt: skip
    op.create_index(op.f("ix_households_compound_id"), "households", ["compound_id"])
    op.create_table(
        "consultations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("compound_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("title", sa.String(120), nullable=False),
        sa.Column("text", sa.String(2000), nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("threshold_pct", sa.Integer(), nullable=False),
        sa.Column("opened_ms", sa.BigInteger(), nullable=False),
        sa.Column("closes_ms", sa.BigInteger(), nullable=False),
        sa.Column("applied_ms", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('tariff', 'sockets', 'text')", name=op.f("ck_consultations_kind")
        ),
        sa.ForeignKeyConstraint(
            ["compound_id"], ["compounds.id"], name=op.f("fk_consultations_compound_id_compounds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consultations")),
    )
    op.create_index(op.f("ix_consultations_compound_id"), "consultations", ["compound_id"])
    op.create_table(
        "consultation_answers",
        sa.Column("consultation_id", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("answer", sa.String(8), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["consultation_id"], ["consultations.id"],
            name=op.f("fk_consultation_answers_consultation_id_consultations"),
        ),
        sa.ForeignKeyConstraint(
            ["household_id"], ["households.id"],
            name=op.f("fk_consultation_answers_household_id_households"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_consultation_answers_user_id_users")
        ),
        sa.PrimaryKeyConstraint(
            "consultation_id", "household_id", name=op.f("pk_consultation_answers")
        ),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("consultation_answers")
    op.drop_index(op.f("ix_consultations_compound_id"), table_name="consultations")
    op.drop_table("consultations")
    op.drop_index(op.f("ix_households_compound_id"), table_name="households")
    op.drop_table("households")
