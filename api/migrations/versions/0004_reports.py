"""Community office reports: rollups per socket-day and shed-hour, what each
session contributed to them, and unserved demand events.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DAY_COUNTS = (
    "sessions",
    "energy_wh",
    "billed_fen",
    "refund_fen",
    "duration_ms",
    "in_use_ms",
    "end_full",
    "end_unplugged",
    "end_money",
    "end_safety",
    "end_stopped",
    "end_other",
    "incidents",
    "unserved",
)
_HOUR_COUNTS = ("sessions", "in_use_ms", "unserved")


def _counters(names: Sequence[str]) -> list[sa.Column[int]]:
    return [sa.Column(n, sa.BigInteger(), server_default="0", nullable=False) for n in names]


def upgrade() -> None:
    op.create_table(
        "report_socket_days",
        sa.Column("shed_id", sa.String(length=32), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("day_ms", sa.BigInteger(), nullable=False),
        sa.Column("compound_id", sa.String(length=32), nullable=False),
        *_counters(_DAY_COUNTS),
        sa.ForeignKeyConstraint(
            ["shed_id"], ["sheds.id"], name=op.f("fk_report_socket_days_shed_id_sheds")
        ),
        sa.PrimaryKeyConstraint("shed_id", "port", "day_ms", name=op.f("pk_report_socket_days")),
    )
    op.create_index(
        op.f("ix_report_socket_days_compound_id_day_ms"),
        "report_socket_days",
        ["compound_id", "day_ms"],
    )
    op.create_table(
        "report_shed_hours",
        sa.Column("shed_id", sa.String(length=32), nullable=False),
        sa.Column("hour_ms", sa.BigInteger(), nullable=False),
        sa.Column("compound_id", sa.String(length=32), nullable=False),
        *_counters(_HOUR_COUNTS),
        sa.ForeignKeyConstraint(
            ["shed_id"], ["sheds.id"], name=op.f("fk_report_shed_hours_shed_id_sheds")
        ),
        sa.PrimaryKeyConstraint("shed_id", "hour_ms", name=op.f("pk_report_shed_hours")),
    )
    op.create_index(
        op.f("ix_report_shed_hours_compound_id_hour_ms"),
        "report_shed_hours",
        ["compound_id", "hour_ms"],
    )
    op.create_table(
        "report_contributions",
        sa.Column("shed_id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column(
            "parts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shed_id"], ["sheds.id"], name=op.f("fk_report_contributions_shed_id_sheds")
        ),
        sa.PrimaryKeyConstraint("shed_id", "session_id", name=op.f("pk_report_contributions")),
    )
    op.create_table(
        "demand_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("shed_id", sa.String(length=32), nullable=False),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("visitor", sa.String(length=32), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("source IN ('scan', 'card')", name=op.f("ck_demand_events_source")),
        sa.ForeignKeyConstraint(
            ["shed_id"], ["sheds.id"], name=op.f("fk_demand_events_shed_id_sheds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_demand_events")),
    )
    op.create_index(
        op.f("ix_demand_events_shed_id_visitor_at_ms"),
        "demand_events",
        ["shed_id", "visitor", "at_ms"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_demand_events_shed_id_visitor_at_ms"), table_name="demand_events")
    op.drop_table("demand_events")
    op.drop_table("report_contributions")
    op.drop_index(op.f("ix_report_shed_hours_compound_id_hour_ms"), table_name="report_shed_hours")
    op.drop_table("report_shed_hours")
    op.drop_index(op.f("ix_report_socket_days_compound_id_day_ms"), table_name="report_socket_days")
    op.drop_table("report_socket_days")
