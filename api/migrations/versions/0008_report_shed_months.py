"""District reports: a rollup per shed and local month (`report_shed_months`),
filled from the socket-day rollups already there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 20:00:00.000000
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = (
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
_LOCAL = timezone(timedelta(hours=8))  # report days and months are China time


def _month_ms(day_ms: int) -> int:
    d = datetime.fromtimestamp(day_ms / 1000, _LOCAL).date()
    first = date(d.year, d.month, 1)
    return int(datetime(first.year, first.month, 1, tzinfo=_LOCAL).timestamp() * 1000)


def upgrade() -> None:
    table = op.create_table(
        "report_shed_months",
        sa.Column("shed_id", sa.String(length=32), nullable=False),
        sa.Column("month_ms", sa.BigInteger(), nullable=False),
        sa.Column("compound_id", sa.String(length=32), nullable=False),
        *[sa.Column(n, sa.BigInteger(), server_default="0", nullable=False) for n in _COUNTS],
        sa.ForeignKeyConstraint(
            ["shed_id"], ["sheds.id"], name=op.f("fk_report_shed_months_shed_id_sheds")
        ),
        sa.PrimaryKeyConstraint("shed_id", "month_ms", name=op.f("pk_report_shed_months")),
    )
    sums = ", ".join(f"sum({n})" for n in _COUNTS)
    rows = op.get_bind().execute(
        sa.text(
            f"SELECT shed_id, compound_id, day_ms, {sums} FROM report_socket_days "
            "GROUP BY shed_id, compound_id, day_ms"
        )
    )
    months: defaultdict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0] * len(_COUNTS))
    for shed_id, compound_id, day_ms, *counts in rows:
        into = months[(shed_id, compound_id, _month_ms(day_ms))]
        for i, value in enumerate(counts):
            into[i] += int(value or 0)
    if months:
        op.bulk_insert(
            table,
            [
                {
                    "shed_id": s,
                    "compound_id": c,
                    "month_ms": m,
                    **dict(zip(_COUNTS, v, strict=True)),
                }
                for (s, c, m), v in months.items()
            ],
        )


def downgrade() -> None:
    op.drop_table("report_shed_months")
