"""Scan-to-pay: order money and provider bookkeeping, the refund sender's
state, refused notifications, and residents' SMS login.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 09:58:45.474152
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_REFUND_STATUSES = "status IN ('pending', 'processing', 'success', 'abnormal', 'closed')"
_NEW_REFUND_STATUSES = (
    "status IN ('pending', 'processing', 'success', 'abnormal', 'closed', 'failed')"
)


def upgrade() -> None:
    op.create_table(
        "login_codes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("used_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_codes")),
    )
    op.create_index(op.f("ix_login_codes_phone_created_ms"), "login_codes", ["phone", "created_ms"])
    op.create_table(
        "notification_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=256), nullable=False),
        sa.Column("notification_id", sa.String(length=64), nullable=True),
        sa.Column("event_type", sa.String(length=32), nullable=True),
        sa.Column("out_trade_no", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_log")),
    )
    op.create_index(op.f("ix_notification_log_received_ms"), "notification_log", ["received_ms"])
    op.create_table(
        "sms_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("text", sa.String(length=256), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_messages")),
    )
    op.create_index(op.f("ix_sms_messages_phone"), "sms_messages", ["phone"])
    op.create_table(
        "user_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_sessions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_user_sessions")),
    )
    op.create_index(op.f("ix_user_sessions_user_id"), "user_sessions", ["user_id"])

    with op.batch_alter_table("orders") as batch_op:
        batch_op.add_column(
            sa.Column("paid_fen", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("billed_fen", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("refund_fen", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("problem", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("provider_closed_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("queried_ms", sa.BigInteger(), nullable=True))
        batch_op.create_index(batch_op.f("ix_orders_command_id"), ["command_id"])
        batch_op.create_index(batch_op.f("ix_orders_phone"), ["phone"])
        batch_op.create_index(batch_op.f("ix_orders_status_expires_ms"), ["status", "expires_ms"])

    with op.batch_alter_table("refunds") as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("next_attempt_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("sent_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.String(length=256), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_refunds_status_next_attempt_ms"), ["status", "next_attempt_ms"]
        )
        # A refund the provider refuses is 'failed' (it needs staff, like 'abnormal').
        batch_op.drop_constraint(op.f("ck_refunds_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_refunds_status"), _NEW_REFUND_STATUSES)


def downgrade() -> None:
    with op.batch_alter_table("refunds") as batch_op:
        batch_op.drop_constraint(op.f("ck_refunds_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_refunds_status"), _OLD_REFUND_STATUSES)
        batch_op.drop_index(batch_op.f("ix_refunds_status_next_attempt_ms"))
        batch_op.drop_column("last_error")
        batch_op.drop_column("sent_ms")
        batch_op.drop_column("next_attempt_ms")
        batch_op.drop_column("attempts")

    with op.batch_alter_table("orders") as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_status_expires_ms"))
        batch_op.drop_index(batch_op.f("ix_orders_phone"))
        batch_op.drop_index(batch_op.f("ix_orders_command_id"))
        batch_op.drop_column("queried_ms")
        batch_op.drop_column("provider_closed_ms")
        batch_op.drop_column("problem")
        batch_op.drop_column("refund_fen")
        batch_op.drop_column("billed_fen")
        batch_op.drop_column("paid_fen")

    op.drop_index(op.f("ix_user_sessions_user_id"), table_name="user_sessions")
    op.drop_table("user_sessions")
    op.drop_index(op.f("ix_sms_messages_phone"), table_name="sms_messages")
    op.drop_table("sms_messages")
    op.drop_index(op.f("ix_notification_log_received_ms"), table_name="notification_log")
    op.drop_table("notification_log")
    op.drop_index(op.f("ix_login_codes_phone_created_ms"), table_name="login_codes")
    op.drop_table("login_codes")
