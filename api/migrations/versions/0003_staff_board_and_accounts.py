"""Staff accounts and the staff board: login names, login throttling, the
audit log, the latest live snapshot per shed, the board's change marks, and
the acknowledgement command of an alarm.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:04:53.807454
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("window_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("compound_id", sa.String(length=32), nullable=True),
        sa.Column("shed_id", sa.String(length=32), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=False),
        sa.Column("note", sa.String(length=512), nullable=True),
        sa.Column("data", _JSON, nullable=True),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("result_code", sa.String(length=64), nullable=True),
        sa.Column("result_message", sa.String(length=512), nullable=True),
        sa.Column("result_ms", sa.BigInteger(), nullable=True),
        sa.Column("command_id", sa.String(length=40), nullable=True),
        sa.CheckConstraint(
            "result IN ('ok', 'pending', 'failed')", name=op.f("ck_audit_log_result")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_audit_log_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_command_id"), "audit_log", ["command_id"])
    op.create_index(op.f("ix_audit_log_compound_id_at_ms"), "audit_log", ["compound_id", "at_ms"])
    op.create_index(op.f("ix_audit_log_shed_id_at_ms"), "audit_log", ["shed_id", "at_ms"])
    op.create_table(
        "board_marks",
        sa.Column("shed_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("changed_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shed_id"], ["sheds.id"], name=op.f("fk_board_marks_shed_id_sheds")
        ),
        sa.PrimaryKeyConstraint("shed_id", name=op.f("pk_board_marks")),
    )
    op.create_table(
        "live_snapshots",
        sa.Column("shed_id", sa.String(length=32), nullable=False),
        sa.Column("taken_ms", sa.BigInteger(), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("data", _JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["shed_id"], ["sheds.id"], name=op.f("fk_live_snapshots_shed_id_sheds")
        ),
        sa.PrimaryKeyConstraint("shed_id", name=op.f("pk_live_snapshots")),
    )
    with op.batch_alter_table("alarms") as batch_op:
        batch_op.add_column(sa.Column("ack_command_id", sa.String(length=40), nullable=True))

    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("login", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_users_login"), ["login"])


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_users_login"), type_="unique")
        batch_op.drop_column("login")

    with op.batch_alter_table("alarms") as batch_op:
        batch_op.drop_column("ack_command_id")

    op.drop_table("live_snapshots")
    op.drop_table("board_marks")
    op.drop_index(op.f("ix_audit_log_shed_id_at_ms"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_compound_id_at_ms"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_command_id"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("login_throttle")
