"""Who made each order (client address, device cookie hash), for the limit of
unpaid orders one client may hold (docs/security.md).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("client_address", sa.String(64), nullable=True))
        batch.add_column(sa.Column("device_hash", sa.String(32), nullable=True))
        batch.create_index("ix_orders_client_address", ["client_address"])
        batch.create_index("ix_orders_device_hash", ["device_hash"])


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_index("ix_orders_device_hash")
        batch.drop_index("ix_orders_client_address")
        batch.drop_column("device_hash")
        batch.drop_column("client_address")
