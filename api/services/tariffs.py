"""Storing tariffs: validated by the controller's own tariff code, versions immutable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from api.errors import Conflict, Invalid, NotFound
from api.models import Tariff
from api.repos import compounds, tariffs
from controller.core.tariffs import TariffError, tariff_from_dict, tariff_to_dict


def store_tariff(
    db: Session, body: Mapping[str, Any], *, compound_id: str | None, now_ms: int
) -> Tariff:
    """Store a tariff version, or return the stored one if it is the same."""
    try:
        tariff = tariff_from_dict(body)
    except TariffError as err:
        raise Invalid(err.message, code=f"tariff_{err.code}") from err
    if compound_id is not None and compounds.get_compound(db, compound_id) is None:
        raise NotFound(f"no compound {compound_id}", code="unknown_compound")
    normalised = tariff_to_dict(tariff)
    existing = tariffs.get_tariff(db, tariff.id, tariff.version)
    if existing is not None:
        if existing.body == normalised and existing.compound_id == compound_id:
            return existing
        raise Conflict(
            f"tariff {tariff.id} version {tariff.version} exists with other content; "
            "publish a new version",
            code="tariff_version_exists",
        )
    row = Tariff(
        id=tariff.id,
        version=tariff.version,
        compound_id=compound_id,
        name=tariff.name,
        body=normalised,
        created_ms=now_ms,
    )
    db.add(row)
    db.flush()
    return row
