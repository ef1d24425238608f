"""The public money page: the office's grid price and margin purpose per
compound, expense lines, and the sheds' main meter readings per month.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 20:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "money_settings",
        sa.Column("compound_id", sa.String(32), nullable=False),
        sa.Column("grid_fen_per_kwh", sa.Integer(), nullable=False),
        sa.Column("margin_for", sa.String(200), server_default="", nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["compound_id"], ["compounds.id"], name=op.f("fk_money_settings_compound_id_compounds")
        ),
        sa.PrimaryKeyConstraint("compound_id", name=op.f("pk_money_settings")),
    )
    op.create_table(
        "money_expenses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("compound_id", sa.String(32), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.String(200), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["compound_id"], ["compounds.id"], name=op.f("fk_money_expenses_compound_id_compounds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_money_expenses")),
    )
    op.create_index(
        op.f("ix_money_expenses_compound_id_month"), "money_expenses", ["compound_id", "month"]
    )
    op.create_table(
        "money_meter_readings",
        sa.Column("shed_id", sa.String(32), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("energy_wh", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shed_id"], ["sheds.id"], name=op.f("fk_money_meter_readings_shed_id_sheds")
        ),
        sa.PrimaryKeyConstraint("shed_id", "month", name=op.f("pk_money_meter_readings")),
    )


def downgrade() -> None:
    op.drop_table("money_meter_readings")
    op.drop_index(op.f("ix_money_expenses_compound_id_month"), table_name="money_expenses")
    op.drop_table("money_expenses")
    op.drop_table("money_settings")
