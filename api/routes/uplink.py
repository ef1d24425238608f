"""POST /api/v1/sheds/{shed_id}/uplink: records from a shed (docs/uplink-contract.md)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CtxDep, ShedDep
from api.errors import TooLarge
from api.schemas.records import MAX_RECORDS, UplinkAnswer, UplinkBody
from api.services.uplink import apply_uplink

router = APIRouter(tags=["shed"])


@router.post(
    "/sheds/{shed_id}/uplink",
    responses={413: {"description": f"more than {MAX_RECORDS} records (too_many_records)"}},
)
def uplink(body: UplinkBody, shed: ShedDep, ctx: CtxDep) -> UplinkAnswer:
    """Apply the batch in one transaction (set-based, api/services/uplink.py);
    answer which records were applied, which were duplicates (version at or
    below the stored one, or an earlier one of the batch) and which were
    rejected (with a code). Nothing of a rejected record is stored."""
    if len(body.records) > MAX_RECORDS:
        raise TooLarge(
            f"{len(body.records)} records; at most {MAX_RECORDS} per call",
            code="too_many_records",
        )
    result = apply_uplink(ctx.sessions, shed.id, body.records, now_ms=ctx.now_ms(), hooks=ctx.hooks)
    return UplinkAnswer(
        applied=result.applied, duplicates=result.duplicates, rejected=result.rejected
    )
