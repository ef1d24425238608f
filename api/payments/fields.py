"""Typed reads of decoded JSON. No I/O.

JSON gives exact types, so `type(x) is int` accepts 300 and refuses 300.0,
"300" and True: no float or string ever becomes money.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any


class FieldError(ValueError):
    """A field is missing or has the wrong JSON type or value."""


def load_object(raw: bytes) -> Mapping[str, Any]:
    """Parse UTF-8 JSON that must hold an object."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise FieldError(f"not UTF-8 JSON: {err}") from err
    if type(value) is not dict:
        raise FieldError("JSON is not an object")
    return value


def obj(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if type(value) is not dict:
        raise FieldError(f"{key}: expected an object")
    return value


def text(parent: Mapping[str, Any], key: str) -> str:
    value = parent.get(key)
    if type(value) is not str or not value:
        raise FieldError(f"{key}: expected a non-empty string")
    return value


def optional_text(parent: Mapping[str, Any], key: str, default: str = "") -> str:
    value = parent.get(key, default)
    if value is None:
        return default
    if type(value) is not str:
        raise FieldError(f"{key}: expected a string")
    return value


def fen(parent: Mapping[str, Any], key: str) -> int:
    """An amount in fen: a JSON integer >= 0."""
    value = parent.get(key)
    if type(value) is not int or value < 0:
        raise FieldError(f"{key}: expected an integer number of fen >= 0")
    return value


def optional_fen(parent: Mapping[str, Any], key: str) -> int | None:
    return None if parent.get(key) is None else fen(parent, key)


def timestamp(parent: Mapping[str, Any], key: str) -> datetime:
    """An RFC 3339 time with an offset, e.g. `2026-11-22T20:01:30+08:00`."""
    raw = text(parent, key)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as err:
        raise FieldError(f"{key}: not an RFC 3339 time: {raw!r}") from err
    if value.tzinfo is None:
        raise FieldError(f"{key}: time without an offset: {raw!r}")
    return value


def optional_timestamp(parent: Mapping[str, Any], key: str) -> datetime | None:
    return None if parent.get(key) in (None, "") else timestamp(parent, key)
