"""The tariff each shed reports it bills at (`tariff` uplink records), so the
posted price is the billed one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 19:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("sheds") as batch:
        batch.add_column(sa.Column("tariff", json_type, nullable=True))
        batch.add_column(sa.Column("tariff_received_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sheds") as batch:
        batch.drop_column("tariff_received_ms")
        batch.drop_column("tariff")
