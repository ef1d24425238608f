"""Constrained types shared by the bodies.

Every string and integer is bounded to what its column holds, so a value that
passes validation can always be stored (on PostgreSQL too).
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field, StringConstraints

ID_PATTERN: Final = r"^[a-z0-9-]{1,32}$"  # compound and shed ids (as in the controller)
MAX_MS: Final = 10**15  # far beyond any real timestamp; fits every BIGINT
MAX_FEN: Final = 10**12
MAX_WH: Final = 2**62

PlainId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Ref = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Ms = Annotated[int, Field(strict=True, ge=0, le=MAX_MS)]
Fen = Annotated[int, Field(strict=True, ge=0, le=MAX_FEN)]
Wh = Annotated[int, Field(strict=True, ge=0, le=MAX_WH)]
Port = Annotated[int, Field(strict=True, ge=1, le=9999)]
Watts = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


def bounded(max_length: int, *, min_length: int = 0) -> StringConstraints:
    """For `Annotated[str, bounded(n)]`: a string that fits a String(n) column."""
    return StringConstraints(min_length=min_length, max_length=max_length)
