"""Money on the resident pages: integer fen in, yuan with two decimals out.

The one place that turns fen into text. No arithmetic on money happens here
beyond integer division of fen for display; a value that is not an integer
(a float, a string, a bool) is shown as a dash rather than guessed at.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

DASH = "—"


def yuan(fen: object) -> str:
    """`1234` -> `"12.34"`, `5` -> `"0.05"`, `-150` -> `"-1.50"`; anything but an int -> `"—"`."""
    if not isinstance(fen, int) or isinstance(fen, bool):
        if fen is not None:
            log.warning("money that is not integer fen: %r", fen)
        return DASH
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def money(fen: object, lang: str) -> str:
    """`yuan` with its unit as residents read it: `"12.34 元"` (zh) or `"¥12.34"` (en)."""
    text = yuan(fen)
    if text == DASH:
        return text
    if lang == "en":
        return f"-¥{text[1:]}" if text.startswith("-") else f"¥{text}"
    return f"{text} 元"
