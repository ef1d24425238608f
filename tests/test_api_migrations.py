"""The Alembic migrations make exactly the schema the models describe, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import BigInteger, Column, MetaData, inspect

from api.db import check_schema, current_revision, head_revision, make_engine, upgrade
from api.models import Base

pytest_plugins = ["tests.api_db"]


def _diff(url: str, metadata: MetaData) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_migrations_match_models(db_url: str) -> None:
    assert _diff(db_url, Base.metadata) == []


def test_the_comparison_would_notice_a_change(db_url: str) -> None:
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["sheds"].append_column(Column("added_later_ms", BigInteger))
    diff = _diff(db_url, changed)
    assert len(diff) == 1
    assert diff[0][0] == "add_column"  # type: ignore[index]


def test_upgrade_is_idempotent_and_at_head(db_url: str) -> None:
    upgrade(db_url)  # already at head: nothing to do, no error
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
        check_schema(engine)
        assert "commands" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_an_unmigrated_database_is_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    try:
        with pytest.raises(RuntimeError, match="python -m api migrate"):
            check_schema(engine)
    finally:
        engine.dispose()
