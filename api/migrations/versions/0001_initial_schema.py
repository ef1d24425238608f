"""Initial schema: tenants, sheds, shed records, commands, money, people and cards.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 09:41:19.431442
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "compounds",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compounds")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("phone", name=op.f("uq_users_phone")),
    )
    op.create_table(
        "cards",
        sa.Column("compound_id", sa.String(length=32), nullable=False),
        sa.Column("uid", sa.String(length=20), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("balance_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("blocked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["compound_id"], ["compounds.id"], name=op.f("fk_cards_compound_id_compounds")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_cards_user_id_users")),
        sa.PrimaryKeyConstraint("compound_id", "uid", name=op.f("pk_cards")),
    )
    op.create_index(op.f("ix_cards_user_id"), "cards", ["user_id"], unique=False)
    op.create_table(
        "role_grants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("compound_id", sa.String(length=32), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "role IN ('resident', 'staff', 'office', 'admin')", name=op.f("ck_role_grants_role")
        ),
        sa.ForeignKeyConstraint(
            ["compound_id"], ["compounds.id"], name=op.f("fk_role_grants_compound_id_compounds")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_role_grants_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_grants")),
        sa.UniqueConstraint(
            "user_id", "compound_id", "role", name=op.f("uq_role_grants_user_id_compound_id_role")
        ),
    )
    op.create_index(
        op.f("ix_role_grants_compound_id"), "role_grants", ["compound_id"], unique=False
    )
    op.create_table(
        "sheds",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("compound_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger(), nullable=True),
        sa.Column("command_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["compound_id"], ["compounds.id"], name=op.f("fk_sheds_compound_id_compounds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sheds")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_sheds_token_hash")),
    )
    op.create_index(op.f("ix_sheds_compound_id"), "sheds", ["compound_id"], unique=False)
    op.create_table(
        "tariffs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("compound_id", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column(
            "body",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["compound_id"], ["compounds.id"], name=op.f("fk_tariffs_compound_id_compounds")
        ),
        sa.PrimaryKeyConstraint("id", "version", name=op.f("pk_tariffs")),
    )
    op.create_index(op.f("ix_tariffs_compound_id"), "tariffs", ["compound_id"], unique=False)
    op.create_table(
        "alarms",
        sa.Column("shed_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("raised_ms", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.String(length=256), nullable=False),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("bay", sa.Integer(), nullable=True),
        sa.Column("board", sa.String(length=64), nullable=True),
        sa.Column("sensor", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("acked_ms", sa.BigInteger(), nullable=True),
        sa.Column("acked_by", sa.String(length=64), nullable=True),
        sa.Column("note", sa.String(length=512), nullable=True),
        sa.Column("cleared_ms", sa.BigInteger(), nullable=True),
        sa.Column("reported_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["shed_id"], ["sheds.id"], name=op.f("fk_alarms_shed_id_sheds")),
        sa.PrimaryKeyConstraint("shed_id", "id", name=op.f("pk_alarms")),
    )
    op.create_index(op.f("ix_alarms_shed_id_active"), "alarms", ["shed_id", "active"], unique=False)
    op.create_table(
        "bays",
        sa.Column("shed_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("occupied", sa.Boolean(), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=False),
        sa.Column("reported_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["shed_id"], ["sheds.id"], name=op.f("fk_bays_shed_id_sheds")),
        sa.PrimaryKeyConstraint("shed_id", "number", name=op.f("pk_bays")),
    )
    op.create_table(
        "charge_sessions",
        sa.Column("shed_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("auth_kind", sa.String(length=16), nullable=False),
        sa.Column("auth_ref", sa.String(length=64), nullable=False),
        sa.Column("auth_mode", sa.String(length=16), nullable=False),
        sa.Column("prepaid_fen", sa.BigInteger(), nullable=True),
        sa.Column("order_no", sa.String(length=64), nullable=True),
        sa.Column("tariff_id", sa.String(length=64), nullable=True),
        sa.Column("tariff_version", sa.Integer(), nullable=True),
        sa.Column(
            "tariff",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("stop_ms", sa.BigInteger(), nullable=True),
        sa.Column("ended_ms", sa.BigInteger(), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("first_wh", sa.BigInteger(), nullable=True),
        sa.Column("last_wh", sa.BigInteger(), nullable=True),
        sa.Column("energy_wh", sa.BigInteger(), nullable=False),
        sa.Column("peak_w", sa.Double(), nullable=False),
        sa.Column("billed_fen", sa.BigInteger(), nullable=False),
        sa.Column("refund_fen", sa.BigInteger(), nullable=False),
        sa.Column(
            "flags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "bill",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("reported_ms", sa.BigInteger(), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("closed_received_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["shed_id"], ["sheds.id"], name=op.f("fk_charge_sessions_shed_id_sheds")
        ),
        sa.PrimaryKeyConstraint("shed_id", "id", name=op.f("pk_charge_sessions")),
    )
    op.create_index(
        op.f("ix_charge_sessions_order_no"), "charge_sessions", ["order_no"], unique=False
    )
    op.create_index(
        op.f("ix_charge_sessions_shed_id_ended_ms"),
        "charge_sessions",
        ["shed_id", "ended_ms"],
        unique=False,
    )
    op.create_table(
        "commands",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("shed_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("delivered_ms", sa.BigInteger(), nullable=True),
        sa.Column("result_ok", sa.Boolean(), nullable=True),
        sa.Column("result_code", sa.String(length=64), nullable=True),
        sa.Column("result_message", sa.String(length=512), nullable=True),
        sa.Column(
            "result_data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("result_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["shed_id"], ["sheds.id"], name=op.f("fk_commands_shed_id_sheds")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commands")),
        sa.UniqueConstraint("shed_id", "seq", name=op.f("uq_commands_shed_id_seq")),
    )
    op.create_index(
        op.f("ix_commands_result_ms_created_ms"),
        "commands",
        ["result_ms", "created_ms"],
        unique=False,
    )
    op.create_table(
        "monthly_plans",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("compound_id", sa.String(length=32), nullable=False),
        sa.Column("card_uid", sa.String(length=20), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("starts_ms", sa.BigInteger(), nullable=False),
        sa.Column("ends_ms", sa.BigInteger(), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("out_trade_no", sa.String(length=32), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("ends_ms > starts_ms", name=op.f("ck_monthly_plans_period")),
        sa.CheckConstraint("price_fen >= 0", name=op.f("ck_monthly_plans_price")),
        sa.ForeignKeyConstraint(
            ["compound_id", "card_uid"],
            ["cards.compound_id", "cards.uid"],
            name=op.f("fk_monthly_plans_compound_id_card_uid_cards"),
        ),
        sa.ForeignKeyConstraint(
            ["compound_id"], ["compounds.id"], name=op.f("fk_monthly_plans_compound_id_compounds")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_monthly_plans_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monthly_plans")),
    )
    op.create_index(
        op.f("ix_monthly_plans_compound_id"), "monthly_plans", ["compound_id"], unique=False
    )
    op.create_index(op.f("ix_monthly_plans_user_id"), "monthly_plans", ["user_id"], unique=False)
    op.create_table(
        "orders",
        sa.Column("out_trade_no", sa.String(length=32), nullable=False),
        sa.Column("shed_id", sa.String(length=32), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tariff_id", sa.String(length=64), nullable=True),
        sa.Column("tariff_version", sa.Integer(), nullable=True),
        sa.Column("code_url", sa.String(length=256), nullable=True),
        sa.Column("command_id", sa.String(length=40), nullable=True),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=True),
        sa.Column("paid_ms", sa.BigInteger(), nullable=True),
        sa.Column("closed_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("mode IN ('until_full', 'amount')", name=op.f("ck_orders_mode")),
        sa.CheckConstraint(
            "status IN ('created', 'paid', 'starting', 'charging', 'closed', "
            "'refunding', 'refunded', 'failed', 'expired')",
            name=op.f("ck_orders_status"),
        ),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_orders_amount_positive")),
        sa.ForeignKeyConstraint(["shed_id"], ["sheds.id"], name=op.f("fk_orders_shed_id_sheds")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_orders_user_id_users")),
        sa.PrimaryKeyConstraint("out_trade_no", name=op.f("pk_orders")),
    )
    op.create_index(
        op.f("ix_orders_shed_id_port_status"), "orders", ["shed_id", "port", "status"], unique=False
    )
    op.create_index(op.f("ix_orders_user_id"), "orders", ["user_id"], unique=False)
    op.create_table(
        "record_versions",
        sa.Column("shed_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=True),
        sa.Column("applied_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shed_id"], ["sheds.id"], name=op.f("fk_record_versions_shed_id_sheds")
        ),
        sa.PrimaryKeyConstraint("shed_id", "kind", "key", name=op.f("pk_record_versions")),
    )
    op.create_table(
        "sockets",
        sa.Column("shed_id", sa.String(length=32), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=128), nullable=True),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("power_w", sa.Double(), nullable=True),
        sa.Column("reported_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["shed_id"], ["sheds.id"], name=op.f("fk_sockets_shed_id_sheds")),
        sa.PrimaryKeyConstraint("shed_id", "port", name=op.f("pk_sockets")),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("notification_id", sa.String(length=64), nullable=False),
        sa.Column("out_trade_no", sa.String(length=32), nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=False),
        sa.Column("trade_state", sa.String(length=32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("payer_total_fen", sa.BigInteger(), nullable=True),
        sa.Column("success_ms", sa.BigInteger(), nullable=True),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["out_trade_no"], ["orders.out_trade_no"], name=op.f("fk_payments_out_trade_no_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("notification_id", name=op.f("uq_payments_notification_id")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_payments_transaction_id")),
    )
    op.create_index(op.f("ix_payments_out_trade_no"), "payments", ["out_trade_no"], unique=False)
    op.create_table(
        "refunds",
        sa.Column("out_refund_no", sa.String(length=64), nullable=False),
        sa.Column("out_trade_no", sa.String(length=32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=128), nullable=False),
        sa.Column("refund_id", sa.String(length=64), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("done_ms", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'success', 'abnormal', 'closed')",
            name=op.f("ck_refunds_status"),
        ),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["out_trade_no"], ["orders.out_trade_no"], name=op.f("fk_refunds_out_trade_no_orders")
        ),
        sa.PrimaryKeyConstraint("out_refund_no", name=op.f("pk_refunds")),
    )
    op.create_index(op.f("ix_refunds_out_trade_no"), "refunds", ["out_trade_no"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_refunds_out_trade_no"), table_name="refunds")
    op.drop_table("refunds")
    op.drop_index(op.f("ix_payments_out_trade_no"), table_name="payments")
    op.drop_table("payments")
    op.drop_table("sockets")
    op.drop_table("record_versions")
    op.drop_index(op.f("ix_orders_user_id"), table_name="orders")
    op.drop_index(op.f("ix_orders_shed_id_port_status"), table_name="orders")
    op.drop_table("orders")
    op.drop_index(op.f("ix_monthly_plans_user_id"), table_name="monthly_plans")
    op.drop_index(op.f("ix_monthly_plans_compound_id"), table_name="monthly_plans")
    op.drop_table("monthly_plans")
    op.drop_index(op.f("ix_commands_result_ms_created_ms"), table_name="commands")
    op.drop_table("commands")
    op.drop_index(op.f("ix_charge_sessions_shed_id_ended_ms"), table_name="charge_sessions")
    op.drop_index(op.f("ix_charge_sessions_order_no"), table_name="charge_sessions")
    op.drop_table("charge_sessions")
    op.drop_table("bays")
    op.drop_index(op.f("ix_alarms_shed_id_active"), table_name="alarms")
    op.drop_table("alarms")
    op.drop_index(op.f("ix_tariffs_compound_id"), table_name="tariffs")
    op.drop_table("tariffs")
    op.drop_index(op.f("ix_sheds_compound_id"), table_name="sheds")
    op.drop_table("sheds")
    op.drop_index(op.f("ix_role_grants_compound_id"), table_name="role_grants")
    op.drop_table("role_grants")
    op.drop_index(op.f("ix_cards_user_id"), table_name="cards")
    op.drop_table("cards")
    op.drop_table("users")
    op.drop_table("compounds")
