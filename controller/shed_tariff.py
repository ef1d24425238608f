"""Which tariff a shed bills new sessions at: the newest one the central API sent
it (kept in the shed's database), else its config's `[tariff]`, else the default.

The controller bills at it, reports it to the central API (a `tariff` uplink
record), and the QR sticker sheet prints it, so the posted price is the billed one.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from controller.core.tariffs import Tariff, tariff_from_dict
from controller.settings import Settings

META_KEY = "tariff"  # the store's meta row the central API's `tariff` command writes


def billed_tariff(settings: Settings, stored: str | None) -> Tariff:
    """`stored`: the store's meta value under META_KEY (JSON), if any."""
    if stored:
        return tariff_from_dict(json.loads(stored))
    return settings.tariff_model()


def stored_tariff(db_path: Path) -> str | None:
    """The tariff the central API sent this shed, read without creating or changing
    anything (None when the shed has no database yet, or no such tariff)."""
    if not db_path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone()
    except sqlite3.Error:  # not (yet) a shed database
        return None
    finally:
        conn.close()
    return str(row[0]) if row else None
