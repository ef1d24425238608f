"""Tariffs: posted prices, the usage a session accumulates, and itemised bills.

Pure logic: no I/O and no clock. Times are integer milliseconds since the Unix
epoch and are always passed in; the local day (time-of-use bands, daily cap)
comes from the tariff's `tz_offset_minutes` (China: UTC+8 = 480).

Money is integer fen. Rates are `Decimal` in the tariff and every computation
on them is exact (`fractions.Fraction`); nothing is rounded until the bill is
itemised, and then once, as described in docs/tariffs.md:

- billing is by the started minute, never the started hour;
- a started minute is priced at the tier of the highest power in that minute;
- lines are rounded ROUND_HALF_UP as a running total, so that the lines always
  add up to the total, the total is the exact amount rounded once, and the
  total can never go down while a session runs.

`Usage` is what the metering feeds on every accepted sample (O(1) amortised).
It does not know the tariff; `compute_bill` and `Usage.cost_so_far_fen` price
it, keeping a per-tariff running tally inside the usage so that repeated
queries only look at the minutes that are new since the last query.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache
from typing import Any, Final, Literal, TypedDict

MS_PER_MINUTE: Final = 60_000
MINUTES_PER_DAY: Final = 1440
MAX_TIERS: Final = 4
MAX_BANDS: Final = 12
MAX_BAND_RATES: Final = 4
SESSION_HARD_CUT_MINUTES: Final = 24 * 60

TariffKind = Literal["power_tier", "energy"]
TARIFF_KINDS: Final[tuple[TariffKind, ...]] = ("power_tier", "energy")

_HALF: Final = Fraction(1, 2)


class TariffError(ValueError):
    """A tariff definition that cannot be used. `code` is stable (config UI, API)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- definitions


@dataclass(frozen=True, slots=True)
class PowerTier:
    """Minutes whose peak power is at most `max_w` (and above the previous tier)."""

    max_w: int
    fen_per_hour: Decimal


@dataclass(frozen=True, slots=True)
class TouBand:
    """Minutes of the local day in [start_minute, end_minute); wraps midnight if start > end.

    `TouBand(1320, 480, ...)` is 22:00-08:00. `TouBand(0, 1440, ...)` is the whole day.
    """

    start_minute: int
    end_minute: int
    fen_per_kwh: Decimal

    def covers(self, minute_of_day: int) -> bool:
        if self.start_minute < self.end_minute:
            return self.start_minute <= minute_of_day < self.end_minute
        return minute_of_day >= self.start_minute or minute_of_day < self.end_minute


@dataclass(frozen=True, slots=True)
class Tariff:
    """A posted price. Construction validates it: an invalid `Tariff` cannot exist."""

    id: str
    version: int
    name: str
    kind: TariffKind
    tiers: tuple[PowerTier, ...] = ()
    bands: tuple[TouBand, ...] = ()
    service_fen_per_kwh: Decimal = Decimal(0)
    start_fee_fen: int = 0
    free_minutes: int = 0
    daily_cap_fen: int | None = None
    tz_offset_minutes: int = 480

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `TariffError` with a stable code if the definition is unusable."""
        if not isinstance(self.id, str) or not self.id.strip():
            raise TariffError("bad_id", "id must be a non-empty string")
        if not _is_int(self.version) or self.version < 1:
            raise TariffError(
                "bad_version", f"version must be an integer >= 1, not {self.version!r}"
            )
        if not isinstance(self.name, str):
            raise TariffError("bad_name", "name must be a string")
        if self.kind not in TARIFF_KINDS:
            raise TariffError("bad_kind", f"kind must be one of {TARIFF_KINDS}, not {self.kind!r}")
        if not isinstance(self.tiers, tuple) or not isinstance(self.bands, tuple):
            raise TariffError("bad_field", "tiers and bands must be tuples")
        _check_rate(self.service_fen_per_kwh, "service_fen_per_kwh")
        if self.kind == "power_tier":
            self._validate_tiers()
            if self.bands:
                raise TariffError(
                    "bands_not_allowed", "a power_tier tariff has no time-of-use bands"
                )
            if self.service_fen_per_kwh != 0:
                raise TariffError(
                    "service_fee_not_allowed", "a power_tier tariff has no per-kWh service fee"
                )
        else:
            self._validate_bands()
            if self.tiers:
                raise TariffError("tiers_not_allowed", "an energy tariff has no power tiers")
        if not _is_int(self.start_fee_fen) or self.start_fee_fen < 0:
            raise TariffError("bad_start_fee", "start_fee_fen must be an integer >= 0")
        if not _is_int(self.free_minutes) or not 0 <= self.free_minutes <= MINUTES_PER_DAY:
            raise TariffError("bad_free_minutes", "free_minutes must be an integer in 0..1440")
        if self.daily_cap_fen is not None:
            if not _is_int(self.daily_cap_fen) or self.daily_cap_fen <= 0:
                raise TariffError("bad_daily_cap", "daily_cap_fen must be None or an integer > 0")
            if self.start_fee_fen > self.daily_cap_fen:
                raise TariffError(
                    "start_fee_above_cap",
                    "the start fee counts towards the first day's cap, so it cannot exceed it",
                )
        if not _is_int(self.tz_offset_minutes) or not -720 <= self.tz_offset_minutes <= 840:
            raise TariffError("bad_tz_offset", "tz_offset_minutes must be an integer in -720..840")

    def _validate_tiers(self) -> None:
        if not self.tiers:
            raise TariffError("no_tiers", "a power_tier tariff needs at least one tier")
        if len(self.tiers) > MAX_TIERS:
            raise TariffError("too_many_tiers", f"at most {MAX_TIERS} tiers, got {len(self.tiers)}")
        prev: PowerTier | None = None
        for n, tier in enumerate(self.tiers, 1):
            if not isinstance(tier, PowerTier):
                raise TariffError("bad_field", f"tier {n} is not a PowerTier")
            if not _is_int(tier.max_w) or tier.max_w <= 0:
                raise TariffError("bad_tier", f"tier {n}: max_w must be an integer > 0")
            _check_rate(tier.fen_per_hour, f"tier {n} fen_per_hour")
            if prev is not None:
                if tier.max_w <= prev.max_w:
                    raise TariffError(
                        "tiers_not_ascending", f"tier {n}: max_w {tier.max_w} <= {prev.max_w}"
                    )
                if tier.fen_per_hour < prev.fen_per_hour:
                    raise TariffError(
                        "tier_rates_decreasing",
                        f"tier {n} is cheaper than tier {n - 1}: more power may never cost less",
                    )
            prev = tier

    def _validate_bands(self) -> None:
        if not self.bands:
            raise TariffError("no_bands", "an energy tariff needs bands covering the whole day")
        if len(self.bands) > MAX_BANDS:
            raise TariffError("too_many_bands", f"at most {MAX_BANDS} bands, got {len(self.bands)}")
        owner: list[int | None] = [None] * MINUTES_PER_DAY
        for n, band in enumerate(self.bands, 1):
            if not isinstance(band, TouBand):
                raise TariffError("bad_field", f"band {n} is not a TouBand")
            s, e = band.start_minute, band.end_minute
            if (
                not _is_int(s)
                or not _is_int(e)
                or not 0 <= s < MINUTES_PER_DAY
                or not 0 < e <= MINUTES_PER_DAY
                or s == e
            ):
                raise TariffError(
                    "bad_band", f"band {n}: need 0 <= start < 1440, 0 < end <= 1440, start != end"
                )
            _check_rate(band.fen_per_kwh, f"band {n} fen_per_kwh")
            minutes = range(s, e) if s < e else (*range(s, MINUTES_PER_DAY), *range(e))
            for m in minutes:
                other = owner[m]
                if other is not None:
                    raise TariffError(
                        "bands_overlap", f"bands {other} and {n} both cover {_hhmm(m)}"
                    )
                owner[m] = n
        if None in owner:
            raise TariffError("bands_gap", f"no band covers {_hhmm(owner.index(None))}")
        if len({b.fen_per_kwh for b in self.bands}) > MAX_BAND_RATES:
            raise TariffError(
                "too_many_band_rates", f"at most {MAX_BAND_RATES} different band rates (尖峰平谷)"
            )


def default_tariff() -> Tariff:
    """The common shed price: 1 元 per 4 h (25 fen/h) at any power up to 1,100 W."""
    return Tariff(
        id="default",
        version=1,
        name="1元/4小时",
        kind="power_tier",
        tiers=(PowerTier(max_w=1100, fen_per_hour=Decimal(25)),),
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_rate(value: object, where: str) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise TariffError("bad_rate", f"{where} must be a finite Decimal, not {value!r}")
    if value < 0:
        raise TariffError("negative_rate", f"{where} must not be negative ({value})")


def _hhmm(minute_of_day: int) -> str:
    return f"{minute_of_day // 60:02d}:{minute_of_day % 60:02d}"


# --------------------------------------------------------------------------- config dicts

_TARIFF_KEYS: Final = frozenset(
    {
        "id",
        "version",
        "name",
        "kind",
        "tiers",
        "bands",
        "service_fen_per_kwh",
        "start_fee_fen",
        "free_minutes",
        "daily_cap_fen",
        "tz_offset_minutes",
    }
)


def tariff_to_dict(tariff: Tariff) -> dict[str, Any]:
    """A TOML/JSON-friendly dict: rates as decimal strings, band times as "HH:MM".

    `daily_cap_fen` is left out when there is no cap (TOML has no null).
    """
    out: dict[str, Any] = {
        "id": tariff.id,
        "version": tariff.version,
        "name": tariff.name,
        "kind": tariff.kind,
        "tiers": [
            {"max_w": t.max_w, "fen_per_hour": _dec_str(t.fen_per_hour)} for t in tariff.tiers
        ],
        "bands": [
            {
                "start_minute": _hhmm(b.start_minute),
                "end_minute": _hhmm(b.end_minute),
                "fen_per_kwh": _dec_str(b.fen_per_kwh),
            }
            for b in tariff.bands
        ],
        "service_fen_per_kwh": _dec_str(tariff.service_fen_per_kwh),
        "start_fee_fen": tariff.start_fee_fen,
        "free_minutes": tariff.free_minutes,
        "tz_offset_minutes": tariff.tz_offset_minutes,
    }
    if tariff.daily_cap_fen is not None:
        out["daily_cap_fen"] = tariff.daily_cap_fen
    return out


def tariff_from_dict(d: Mapping[str, Any]) -> Tariff:
    """Build and validate a tariff from config. Rates must be strings (or ints), never floats.

    Band times may be minutes of the day (int) or "HH:MM" strings ("24:00" = 1440).
    Unknown keys are an error (`unknown_field`): a typo must not silently change a price.
    """
    if not isinstance(d, Mapping):
        raise TariffError("bad_field", "a tariff must be a mapping")
    unknown = set(d) - _TARIFF_KEYS
    if unknown:
        raise TariffError("unknown_field", f"unknown tariff keys: {sorted(unknown)}")
    for key in ("id", "version", "name", "kind"):
        if key not in d:
            raise TariffError("missing_field", f"tariff needs {key!r}")
    tiers = tuple(
        PowerTier(
            max_w=_int_field(t, "max_w", f"tiers[{i}]"),
            fen_per_hour=_dec_field(t, "fen_per_hour", f"tiers[{i}]"),
        )
        for i, t in enumerate(_list_field(d, "tiers", {"max_w", "fen_per_hour"}))
    )
    bands = tuple(
        TouBand(
            start_minute=_minute_field(b, "start_minute", f"bands[{i}]"),
            end_minute=_minute_field(b, "end_minute", f"bands[{i}]"),
            fen_per_kwh=_dec_field(b, "fen_per_kwh", f"bands[{i}]"),
        )
        for i, b in enumerate(
            _list_field(d, "bands", {"start_minute", "end_minute", "fen_per_kwh"})
        )
    )
    cap = d.get("daily_cap_fen")
    return Tariff(
        id=_str_field(d["id"], "id"),
        version=_int_field(d, "version", "tariff"),
        name=_str_field(d["name"], "name"),
        kind=d["kind"],
        tiers=tiers,
        bands=bands,
        service_fen_per_kwh=_to_decimal(d.get("service_fen_per_kwh", "0"), "service_fen_per_kwh"),
        start_fee_fen=_int_field(d, "start_fee_fen", "tariff", 0),
        free_minutes=_int_field(d, "free_minutes", "tariff", 0),
        daily_cap_fen=None if cap is None else _int_field(d, "daily_cap_fen", "tariff"),
        tz_offset_minutes=_int_field(d, "tz_offset_minutes", "tariff", 480),
    )


def _dec_str(value: Decimal) -> str:
    return format(value, "f")


def _str_field(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise TariffError("bad_field", f"{where} must be a string")
    return value


def _list_field(d: Mapping[str, Any], key: str, keys: set[str]) -> list[Mapping[str, Any]]:
    items = d.get(key, [])
    if not isinstance(items, list | tuple):
        raise TariffError("bad_field", f"{key} must be a list")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TariffError("bad_field", f"{key}[{i}] must be a mapping")
        missing, extra = keys - set(item), set(item) - keys
        if missing:
            raise TariffError("missing_field", f"{key}[{i}] needs {sorted(missing)}")
        if extra:
            raise TariffError("unknown_field", f"{key}[{i}] has unknown keys {sorted(extra)}")
    return list(items)


def _int_field(d: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = d.get(key, default)
    if value is None:
        raise TariffError("missing_field", f"{where} needs {key!r}")
    if not _is_int(value):
        raise TariffError("bad_field", f"{where}.{key} must be an integer, not {value!r}")
    return int(value)


def _dec_field(d: Mapping[str, Any], key: str, where: str) -> Decimal:
    return _to_decimal(d[key], f"{where}.{key}")


def _to_decimal(value: object, where: str) -> Decimal:
    if isinstance(value, float):
        raise TariffError("bad_rate", f'{where}: write rates as strings (e.g. "33.33"), not floats')
    if isinstance(value, Decimal):
        return value
    if _is_int(value) or isinstance(value, str):
        try:
            return Decimal(str(value).strip())
        except InvalidOperation as err:
            raise TariffError("bad_rate", f"{where}: {value!r} is not a decimal number") from err
    raise TariffError("bad_rate", f"{where} must be a decimal string, not {value!r}")


def _minute_field(d: Mapping[str, Any], key: str, where: str) -> int:
    value = d[key]
    if _is_int(value):
        return int(value)
    if isinstance(value, str):
        hh, sep, mm = value.strip().partition(":")
        if sep and hh.isdigit() and mm.isdigit() and len(mm) == 2 and int(mm) < 60:
            return int(hh) * 60 + int(mm)
    raise TariffError("bad_field", f'{where}.{key} must be minutes or "HH:MM", not {value!r}')


# --------------------------------------------------------------------------- usage


class Usage:
    """What one session used, fed by the metering on every accepted sample.

    Power is taken as sample-and-hold: between two samples it is the earlier
    one's value (before the first sample: 0 W, the lowest tier). A minute's peak
    is the highest power of that step function over the minute, so a minute
    with no sample carries the last known power, and a minute that starts
    before a new sample arrives also carries the power known before it.

    Storage is one float64 per session minute (peak W; float64 keeps tier
    boundaries such as 200 W exact) and two ints per session minute (Wh of the
    samples in that minute before and after the next UTC-minute boundary, so
    energy can be put into the right time-of-use band of any tariff and
    time zone): about 24 bytes a minute, 35 KB for a 24-hour session.
    """

    __slots__ = (
        "_held_w",
        "_last_ms",
        "_last_run",
        "_peaks",
        "_runs",
        "_start_min",
        "_total_wh",
        "_wh",
        "start_ms",
    )

    def __init__(self, start_ms: int) -> None:
        self.start_ms: Final = start_ms
        self._start_min = start_ms // MS_PER_MINUTE
        self._last_ms = start_ms
        self._held_w = 0.0
        self._peaks: array[float] = array("d")
        self._wh: array[int] = array("q")
        self._total_wh = 0
        self._runs: dict[Tariff, _Running] = {}
        self._last_run: _Running | None = None

    @property
    def last_ms(self) -> int:
        """The latest time seen by `add` or `extend_to`."""
        return self._last_ms

    @property
    def total_wh(self) -> int:
        """All energy added, free minutes included."""
        return self._total_wh

    def started_minutes(self, now_ms: int | None = None) -> int:
        """Started minutes at `now_ms` (never before `last_ms`): 61 s is 2 minutes."""
        now = self._last_ms if now_ms is None else max(now_ms, self._last_ms)
        return -((self.start_ms - now) // MS_PER_MINUTE)

    def peak_w(self, minute: int) -> float:
        """Peak power of session minute `minute` as recorded so far (held power if not yet seen)."""
        if 0 <= minute < len(self._peaks):
            return self._peaks[minute]
        if minute < 0:
            raise IndexError(minute)
        return self._held_w

    def add(self, now_ms: int, w: float, wh_delta: int) -> None:
        """One accepted sample: power `w` now, `wh_delta` Wh since the previous sample.

        The energy is attributed to the minute (and band) of this sample's time.
        """
        if now_ms < self._last_ms:
            raise ValueError(f"sample at {now_ms} is before the last one at {self._last_ms}")
        # Called for every sample: the checks are plain comparisons (NaN fails both).
        if not 0.0 <= w < math.inf:
            raise ValueError(f"power must be finite and >= 0 W, not {w!r}")
        if not (type(wh_delta) is int or _is_int(wh_delta)) or wh_delta < 0:
            raise ValueError(f"wh_delta must be an integer >= 0, not {wh_delta!r}")
        w = float(w)
        minute = (now_ms - self.start_ms) // MS_PER_MINUTE
        peaks = self._peaks
        if minute >= len(peaks):
            self._grow(minute)
            at_minute_start = now_ms == self.start_ms + minute * MS_PER_MINUTE
            peaks.append(w if at_minute_start else max(self._held_w, w))
            self._wh.extend((0, 0))
        elif w > peaks[minute]:
            peaks[minute] = w
        if wh_delta:
            piece = now_ms // MS_PER_MINUTE - self._start_min - minute
            self._wh[2 * minute + piece] += wh_delta
            self._total_wh += wh_delta
        self._held_w = w
        self._last_ms = now_ms

    def extend_to(self, now_ms: int) -> None:
        """Time passed with no sample: each minute started by `now_ms` counts, at the held power."""
        if now_ms < self._last_ms:
            raise ValueError(
                f"cannot extend to {now_ms}, before the last sample at {self._last_ms}"
            )
        self._grow(self.started_minutes(now_ms))
        self._last_ms = now_ms

    def cost_so_far_fen(self, tariff: Tariff, now_ms: int | None = None) -> int:
        """The bill total at `now_ms` (default: `last_ms`), without building the lines.

        O(1) amortised: only minutes that are new since the previous query are looked at.
        Equal to `compute_bill(tariff, self, now_ms).total_fen`.
        """
        plan, snap = _snapshot(tariff, self, self._last_ms if now_ms is None else now_ms)
        return _round_half_up(_capped_exact(plan, snap)[0])

    cost_fen = cost_so_far_fen  # shorter name used by the shed

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly state, for persisting an open session (exact: floats round-trip)."""
        wh = self._wh
        return {
            "v": 1,
            "start_ms": self.start_ms,
            "last_ms": self._last_ms,
            "held_w": self._held_w,
            "peaks_w": list(self._peaks),
            "wh": [[i, wh[i]] for i in range(len(wh)) if wh[i]],  # non-zero pieces only
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Usage:
        """Rebuild a usage saved by `to_dict`; `ValueError` if the state is not consistent."""
        try:
            if d["v"] != 1:
                raise ValueError(f"unknown usage state version {d['v']!r}")
            usage = cls(_int_value(d["start_ms"]))
            last_ms, held = _int_value(d["last_ms"]), _watts(d["held_w"])
            peaks = [_watts(w) for w in d["peaks_w"]]
            pieces = [(_int_value(i), _int_value(wh)) for i, wh in d["wh"]]
        except (KeyError, TypeError) as err:
            raise ValueError(f"bad usage state: {err!r}") from err
        if last_ms < usage.start_ms or len(peaks) > usage.started_minutes(last_ms) + 1:
            raise ValueError("bad usage state: times and minutes disagree")
        usage._peaks.extend(peaks)
        usage._wh.extend([0] * (2 * len(peaks)))
        for i, wh in pieces:
            if not 0 <= i < len(usage._wh) or wh < 0:
                raise ValueError(f"bad usage state: energy piece {i}: {wh}")
            usage._wh[i] += wh
            usage._total_wh += wh
        usage._last_ms, usage._held_w = last_ms, held
        return usage

    def _grow(self, minutes: int) -> None:
        """Make minutes [len, minutes) exist, each starting at the held power."""
        missing = minutes - len(self._peaks)
        if missing > 0:
            self._peaks.extend([self._held_w] * missing)
            self._wh.extend([0] * (2 * missing))


def _int_value(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, not {value!r}")
    return value


def _watts(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"expected watts, not {value!r}")
    if not (value >= 0 and math.isfinite(value)):
        raise TypeError(f"watts must be finite and >= 0, not {value!r}")
    return float(value)


# --------------------------------------------------------------------------- bills


@dataclass(frozen=True, slots=True)
class BillLine:
    code: str
    label_zh: str
    label_en: str
    quantity: Decimal | int
    unit: str
    amount_fen: int


@dataclass(frozen=True, slots=True)
class Bill:
    lines: tuple[BillLine, ...]
    total_fen: int

    def amount(self, code: str) -> int:
        """Sum of the lines with `code` (0 if there is none)."""
        return sum(line.amount_fen for line in self.lines if line.code == code)

    def line(self, code: str) -> BillLine | None:
        return next((line for line in self.lines if line.code == code), None)


def bill_to_dict(bill: Bill) -> dict[str, Any]:
    """JSON-friendly bill (receipts, storage, uplink): decimal quantities as strings."""
    return {
        "total_fen": bill.total_fen,
        "lines": [
            {
                "code": line.code,
                "label_zh": line.label_zh,
                "label_en": line.label_en,
                "quantity": (
                    _dec_str(line.quantity) if isinstance(line.quantity, Decimal) else line.quantity
                ),
                "unit": line.unit,
                "amount_fen": line.amount_fen,
            }
            for line in bill.lines
        ],
    }


def bill_from_dict(d: Mapping[str, Any]) -> Bill:
    """The inverse of `bill_to_dict`; `ValueError` if the dict is not a consistent bill."""
    try:
        return _bill_from_dict(d)
    except (KeyError, TypeError, InvalidOperation) as err:
        raise ValueError(f"bad bill: {err!r}") from err


def _bill_from_dict(d: Mapping[str, Any]) -> Bill:
    lines = tuple(
        BillLine(
            code=str(line["code"]),
            label_zh=str(line["label_zh"]),
            label_en=str(line["label_en"]),
            quantity=(
                Decimal(line["quantity"]) if isinstance(line["quantity"], str) else line["quantity"]
            ),
            unit=str(line["unit"]),
            amount_fen=_int_value(line["amount_fen"]),
        )
        for line in d["lines"]
    )
    total = _int_value(d["total_fen"])
    if total != sum(line.amount_fen for line in lines):
        raise ValueError("bill total is not the sum of its lines")
    return Bill(lines, total)


# Energy band names by rank of rate, highest first (尖峰平谷).
_RANK_NAMES: Final[dict[int, tuple[tuple[str, str, str], ...]]] = {
    1: (("energy", "电费", "Energy"),),
    2: (
        ("energy_peak", "峰时电费", "Peak energy"),
        ("energy_valley", "谷时电费", "Off-peak energy"),
    ),
    3: (
        ("energy_peak", "峰时电费", "Peak energy"),
        ("energy_flat", "平时电费", "Shoulder energy"),
        ("energy_valley", "谷时电费", "Off-peak energy"),
    ),
    4: (
        ("energy_sharp", "尖峰电费", "Super-peak energy"),
        ("energy_peak", "峰时电费", "Peak energy"),
        ("energy_flat", "平时电费", "Shoulder energy"),
        ("energy_valley", "谷时电费", "Off-peak energy"),
    ),
}
_RANK_SHORT_ZH: Final[dict[str, str]] = {
    "energy": "全天",
    "energy_sharp": "尖",
    "energy_peak": "峰",
    "energy_flat": "平",
    "energy_valley": "谷",
}
_RANK_SHORT_EN: Final[dict[str, str]] = {
    "energy": "All day",
    "energy_sharp": "Super-peak",
    "energy_peak": "Peak",
    "energy_flat": "Shoulder",
    "energy_valley": "Off-peak",
}


@dataclass(frozen=True, slots=True)
class _Plan:
    """A tariff compiled for pricing: exact rates per minute / per Wh, band lookup table."""

    tariff: Tariff
    tier_max: tuple[int, ...]
    tier_fen_per_min: tuple[Fraction, ...]
    band_rank: tuple[int, ...]  # per minute of the local day: index into rank_*
    rank_fen_per_wh: tuple[Fraction, ...]
    rank_names: tuple[tuple[str, str, str], ...]
    service_fen_per_wh: Fraction

    def tier_of(self, w: float) -> int:
        return min(bisect_left(self.tier_max, w), len(self.tier_max) - 1)


@lru_cache(maxsize=64)
def _plan(tariff: Tariff) -> _Plan:
    rates = sorted({b.fen_per_kwh for b in tariff.bands}, reverse=True)
    rank = {rate: i for i, rate in enumerate(rates)}
    band_rank = [0] * MINUTES_PER_DAY
    for band in tariff.bands:
        s, e = band.start_minute, band.end_minute
        for m in range(s, e) if s < e else (*range(s, MINUTES_PER_DAY), *range(e)):
            band_rank[m] = rank[band.fen_per_kwh]
    return _Plan(
        tariff=tariff,
        tier_max=tuple(t.max_w for t in tariff.tiers),
        tier_fen_per_min=tuple(Fraction(t.fen_per_hour) / 60 for t in tariff.tiers),
        band_rank=tuple(band_rank),
        rank_fen_per_wh=tuple(Fraction(r) / 1000 for r in rates),
        rank_names=_RANK_NAMES.get(len(rates), ()),
        service_fen_per_wh=Fraction(tariff.service_fen_per_kwh) / 1000,
    )


class _Running:
    """Per-tariff tally of a usage's finished minutes: integer minutes and Wh per (day, line)."""

    __slots__ = ("done", "free_wh", "minutes", "plan", "wh")

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.done = 0  # session minutes [0, done) are folded in
        self.minutes: dict[tuple[int, int], int] = {}  # (local day, tier) -> billable minutes
        self.wh: dict[tuple[int, int], int] = {}  # (local day, band rank) -> billable Wh
        self.free_wh = 0

    def fold(self, usage: Usage, upto: int) -> None:
        tariff = self.plan.tariff
        base = usage._start_min + tariff.tz_offset_minutes  # local minute of minute 0
        free = tariff.free_minutes
        if tariff.kind == "power_tier":
            peaks, tier_of, minutes = usage._peaks, self.plan.tier_of, self.minutes
            for j in range(max(self.done, free), upto):
                key = ((base + j) // MINUTES_PER_DAY, tier_of(peaks[j]))
                minutes[key] = minutes.get(key, 0) + 1
        else:
            whs, band_rank, energy = usage._wh, self.plan.band_rank, self.wh
            for j in range(self.done, min(free, upto)):
                self.free_wh += whs[2 * j] + whs[2 * j + 1]
            for k in range(2 * max(self.done, free), 2 * upto):
                wh = whs[k]
                if wh:
                    day, minute_of_day = divmod(base + (k >> 1) + (k & 1), MINUTES_PER_DAY)
                    key = (day, band_rank[minute_of_day])
                    energy[key] = energy.get(key, 0) + wh
        self.done = max(self.done, upto)

    def energy_of_minute(
        self, usage: Usage, j: int, into: dict[tuple[int, int], int], base: int
    ) -> int:
        """Add the Wh of session minute `j` to `into`, or return them if `j` is a free minute."""
        pieces = (usage._wh[2 * j], usage._wh[2 * j + 1])
        if j < self.plan.tariff.free_minutes:
            return sum(pieces)
        for piece, wh in enumerate(pieces):
            if wh:
                day, minute_of_day = divmod(base + j + piece, MINUTES_PER_DAY)
                key = (day, self.plan.band_rank[minute_of_day])
                into[key] = into.get(key, 0) + wh
        return 0


@dataclass(slots=True)
class _Snapshot:
    """Integer quantities of a usage at one instant, per (local day, line)."""

    usage: Usage
    started: int
    minutes: dict[tuple[int, int], int]
    wh: dict[tuple[int, int], int]
    free_wh: int


def _running(usage: Usage, tariff: Tariff) -> _Running:
    run = usage._last_run
    if run is not None and run.plan.tariff is tariff:
        return run
    run = usage._runs.get(tariff)
    if run is None:
        run = usage._runs[tariff] = _Running(_plan(tariff))
    usage._last_run = run
    return run


def _snapshot(tariff: Tariff, usage: Usage, now_ms: int) -> tuple[_Plan, _Snapshot]:
    run = _running(usage, tariff)
    plan = run.plan
    peaks = usage._peaks
    current = len(peaks) - 1  # the newest minute may still rise; all earlier ones are final
    if current > run.done:
        run.fold(usage, current)
    minutes, wh, free_wh = dict(run.minutes), dict(run.wh), run.free_wh
    started = usage.started_minutes(now_ms)
    free = tariff.free_minutes
    base = usage._start_min + tariff.tz_offset_minutes
    if tariff.kind == "power_tier":
        if free <= current < started:
            key = ((base + current) // MINUTES_PER_DAY, plan.tier_of(peaks[current]))
            minutes[key] = minutes.get(key, 0) + 1
        lo = max(len(peaks), free)
        if lo < started:  # minutes nobody reported yet: at the held power
            tier = plan.tier_of(usage._held_w)
            while lo < started:
                day = (base + lo) // MINUTES_PER_DAY
                hi = min(started, (day + 1) * MINUTES_PER_DAY - base)
                minutes[(day, tier)] = minutes.get((day, tier), 0) + hi - lo
                lo = hi
    elif current >= run.done:
        free_wh += run.energy_of_minute(usage, current, wh, base)
    return plan, _Snapshot(usage, started, minutes, wh, free_wh)


def _round_half_up(x: Fraction) -> int:
    """ROUND_HALF_UP to an integer for x >= 0 (exact)."""
    return math.floor(x + _HALF)


def _capped_exact(plan: _Plan, snap: _Snapshot) -> tuple[Fraction, Fraction, int]:
    """(capped exact total, uncapped exact total, days on which the cap applied)."""
    tariff = plan.tariff
    start_day = (snap.usage._start_min + tariff.tz_offset_minutes) // MINUTES_PER_DAY
    per_day: dict[int, Fraction] = {start_day: Fraction(tariff.start_fee_fen)}
    for (day, tier), n in snap.minutes.items():
        per_day[day] = per_day.get(day, Fraction(0)) + n * plan.tier_fen_per_min[tier]
    for (day, rank), wh in snap.wh.items():
        rate = plan.rank_fen_per_wh[rank] + plan.service_fen_per_wh
        per_day[day] = per_day.get(day, Fraction(0)) + wh * rate
    uncapped = sum(per_day.values(), Fraction(0))
    cap = tariff.daily_cap_fen
    if cap is None:
        return uncapped, uncapped, 0
    capped_days = sum(1 for v in per_day.values() if v > cap)
    limit = Fraction(cap)
    return sum((min(v, limit) for v in per_day.values()), Fraction(0)), uncapped, capped_days


def compute_bill(
    tariff: Tariff, usage: Usage, now_ms: int, *, prepaid_fen: int | None = None
) -> Bill:
    """The itemised bill of `usage` at `now_ms` (a time before `usage.last_ms` means `last_ms`).

    Minutes started by `now_ms` that no sample has reached yet count at the held
    power. With `prepaid_fen`, a `prepaid_cap` line brings a larger total down to
    the prepaid amount. Lines are rounded as a running total (docs/tariffs.md):
    every line is within 1 fen of its exact value, the lines add up to
    `total_fen`, and `total_fen` never decreases as time passes and samples arrive.
    """
    if prepaid_fen is not None and (not _is_int(prepaid_fen) or prepaid_fen < 0):
        raise ValueError(f"prepaid_fen must be an integer >= 0, not {prepaid_fen!r}")
    plan, snap = _snapshot(tariff, usage, now_ms)
    capped, uncapped, capped_days = _capped_exact(plan, snap)
    exact_lines = _exact_lines(plan, snap)

    lines: list[BillLine] = []
    running, rounded = Fraction(0), 0
    for code, zh, en, qty, unit, exact in exact_lines:
        running += exact
        new_rounded = _round_half_up(running)
        lines.append(BillLine(code, zh, en, qty, unit, new_rounded - rounded))
        rounded = new_rounded
    total = _round_half_up(capped)
    cap = tariff.daily_cap_fen
    if cap is not None and capped < uncapped:
        lines.append(
            BillLine(
                "daily_cap_discount",
                f"每日封顶{_yuan(cap)}元优惠",
                f"Daily cap {_yuan(cap)} yuan discount",
                capped_days,
                "day",
                total - rounded,
            )
        )
    if prepaid_fen is not None and total > prepaid_fen:
        lines.append(
            BillLine(
                "prepaid_cap",
                f"不超过预付{_yuan(prepaid_fen)}元",
                f"Capped at {_yuan(prepaid_fen)} yuan prepaid",
                prepaid_fen,
                "fen",
                prepaid_fen - total,
            )
        )
        total = prepaid_fen
    return Bill(tuple(lines), total)


# Why a closed session is not charged at all (controller/core/shed.py), and its bill line.
NOT_CHARGED_LABELS: Final[dict[str, tuple[str, str]]] = {
    "nothing_drawn": ("未用电，不收费", "Nothing drawn, not charged"),
    "start_failed": ("未能开始充电，不收费", "Charging did not start, not charged"),
}


def closing_bill(
    tariff: Tariff,
    usage: Usage,
    stop_ms: int,
    *,
    prepaid_fen: int | None = None,
    not_charged: str | None = None,
) -> Bill:
    """The bill a session closes with; its lines always add up to what is charged.

    `compute_bill` at `stop_ms`, capped at `prepaid_fen` (a `prepaid_cap` line).
    With `not_charged` (a key of NOT_CHARGED_LABELS: nothing was drawn, or the
    socket never switched on) nothing is owed, start fee included: a last
    `not_charged` line takes the whole amount off, so the total is 0 and the
    resident still sees what the time would have cost. A start that failed has
    no time to show: its one line is that `not_charged` line, at 0."""
    bill = compute_bill(tariff, usage, stop_ms, prepaid_fen=prepaid_fen)
    if not_charged is None:
        return bill
    zh, en = NOT_CHARGED_LABELS[not_charged]
    if not_charged == "start_failed":
        return Bill((BillLine("not_charged", zh, en, usage.total_wh, "Wh", 0),), 0)
    line = BillLine("not_charged", zh, en, usage.total_wh, "Wh", -bill.total_fen)
    return Bill((*bill.lines, line), 0)


_ExactLine = tuple[str, str, str, Decimal | int, str, Fraction]


def _exact_lines(plan: _Plan, snap: _Snapshot) -> list[_ExactLine]:
    """The bill's lines in their fixed order, each with its exact amount in fen."""
    tariff = plan.tariff
    out: list[_ExactLine] = []
    if tariff.start_fee_fen:
        out.append(
            ("start_fee", "起步费", "Start fee", 1, "session", Fraction(tariff.start_fee_fen))
        )
    if tariff.free_minutes and snap.started:
        if tariff.kind == "power_tier":
            used = min(tariff.free_minutes, snap.started)
            out.append(("free_minutes", "免费时长", "Free minutes", used, "min", Fraction(0)))
        else:
            free_kwh = _kwh(snap.free_wh)
            out.append(
                (
                    "free_minutes",
                    f"前{tariff.free_minutes}分钟免费电量",
                    f"Energy in the first {tariff.free_minutes} min (free)",
                    free_kwh,
                    "kWh",
                    Fraction(0),
                )
            )
    if tariff.kind == "power_tier":
        per_tier = [0] * len(tariff.tiers)
        for (_, tier), n in snap.minutes.items():
            per_tier[tier] += n
        for tier, n in enumerate(per_tier):
            if n:
                zh, en = _tier_labels(tariff, tier)
                exact = n * plan.tier_fen_per_min[tier]
                out.append((f"time_tier_{tier + 1}", zh, en, n, "min", exact))
    else:
        per_rank = [0] * len(plan.rank_fen_per_wh)
        for (_, rank), wh in snap.wh.items():
            per_rank[rank] += wh
        for rank, wh in enumerate(per_rank):
            if wh:
                code, zh, en = plan.rank_names[rank]
                exact = wh * plan.rank_fen_per_wh[rank]
                out.append((code, zh, en, _kwh(wh), "kWh", exact))
        total_wh = sum(per_rank)
        if total_wh and plan.service_fen_per_wh:
            exact = total_wh * plan.service_fen_per_wh
            out.append(("service_fee", "服务费", "Service fee", _kwh(total_wh), "kWh", exact))
    return out


def _tier_labels(tariff: Tariff, tier: int) -> tuple[str, str]:
    price_zh, price_en = _hour_price(tariff.tiers[tier].fen_per_hour)
    if len(tariff.tiers) == 1:
        return f"充电时长（{price_zh}）", f"Charging time ({price_en})"
    lo = 0 if tier == 0 else tariff.tiers[tier - 1].max_w
    hi = tariff.tiers[tier].max_w
    return f"{lo}-{hi}W 充电时长（{price_zh}）", f"{lo}-{hi} W charging time ({price_en})"


def _kwh(wh: int) -> Decimal:
    return Decimal(wh).scaleb(-3)


# --------------------------------------------------------------------------- prepaid


def prepaid_outcome(bill_total_fen: int, prepaid_fen: int) -> tuple[int, int]:
    """(charged_fen, refund_fen): never charge more than was paid; the rest goes back."""
    for name, value in (("bill_total_fen", bill_total_fen), ("prepaid_fen", prepaid_fen)):
        if not _is_int(value) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, not {value!r}")
    charged = min(bill_total_fen, prepaid_fen)
    return charged, prepaid_fen - charged


def minutes_affordable(
    tariff: Tariff, prepaid_fen: int, at_w: float, *, limit_minutes: int = SESSION_HARD_CUT_MINUTES
) -> int:
    """How many minutes `prepaid_fen` buys at a steady `at_w` (for "1元 ≈ 4小时" on a page).

    The largest n <= `limit_minutes` whose bill (start fee, free minutes, daily
    cap as if it were all one local day) is at most `prepaid_fen`. Energy
    tariffs assume the most expensive band, so the answer is never too
    optimistic. Returns `limit_minutes` when the money cannot run out.
    """
    if not _is_int(prepaid_fen) or prepaid_fen < 0:
        raise ValueError(f"prepaid_fen must be an integer >= 0, not {prepaid_fen!r}")
    if not (at_w >= 0.0 and math.isfinite(at_w)):
        raise ValueError(f"at_w must be finite and >= 0, not {at_w!r}")
    plan = _plan(tariff)
    if tariff.kind == "power_tier":
        per_minute = plan.tier_fen_per_min[plan.tier_of(at_w)]
    else:
        top = max(plan.rank_fen_per_wh) + plan.service_fen_per_wh
        per_minute = Fraction(at_w) / 60 * top

    def cost(n: int) -> int:
        exact = tariff.start_fee_fen + max(0, n - tariff.free_minutes) * per_minute
        if tariff.daily_cap_fen is not None:
            exact = min(exact, Fraction(tariff.daily_cap_fen))
        return _round_half_up(exact)

    if cost(0) > prepaid_fen:
        return 0
    lo, hi = 0, limit_minutes  # invariant: cost(lo) <= prepaid
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(mid) <= prepaid_fen:
            lo = mid
        else:
            hi = mid - 1
    return lo


# --------------------------------------------------------------------------- posted price


class PriceItem(TypedDict):
    code: str
    zh: str
    en: str


class PriceSummary(TypedDict):
    id: str
    version: int
    name: str
    kind: str
    summary_zh: str
    summary_en: str
    items: list[PriceItem]


def describe(tariff: Tariff) -> PriceSummary:
    """The posted price, Chinese first: e.g. "1元/4小时" or "0-200W 1元/4小时" per tier."""
    items: list[PriceItem] = []
    if tariff.kind == "power_tier":
        for i, tier in enumerate(tariff.tiers):
            zh, en = _hour_price(tier.fen_per_hour)
            if len(tariff.tiers) > 1:
                lo = 0 if i == 0 else tariff.tiers[i - 1].max_w
                zh, en = f"{lo}-{tier.max_w}W {zh}", f"{lo}-{tier.max_w} W: {en}"
            items.append({"code": f"time_tier_{i + 1}", "zh": zh, "en": en})
    else:
        plan = _plan(tariff)
        rates = sorted({b.fen_per_kwh for b in tariff.bands}, reverse=True)
        for band in sorted(tariff.bands, key=lambda b: b.start_minute):
            code = plan.rank_names[rates.index(band.fen_per_kwh)][0]
            span = f"{_hhmm(band.start_minute)}-{_hhmm(band.end_minute)}"
            price = _yuan(band.fen_per_kwh)
            items.append(
                {
                    "code": code,
                    "zh": f"{_RANK_SHORT_ZH[code]} {span} {price}元/度",
                    "en": f"{_RANK_SHORT_EN[code]} {span}: {price} yuan/kWh",
                }
            )
        if tariff.service_fen_per_kwh:
            fee = _yuan(tariff.service_fen_per_kwh)
            items.append(
                {
                    "code": "service_fee",
                    "zh": f"服务费 {fee}元/度",
                    "en": f"Service fee {fee} yuan/kWh",
                }
            )
    if tariff.start_fee_fen:
        fee = _yuan(tariff.start_fee_fen)
        items.append({"code": "start_fee", "zh": f"起步费 {fee}元", "en": f"Start fee {fee} yuan"})
    if tariff.free_minutes:
        n = tariff.free_minutes
        items.append({"code": "free_minutes", "zh": f"前{n}分钟免费", "en": f"First {n} min free"})
    if tariff.daily_cap_fen is not None:
        cap = _yuan(tariff.daily_cap_fen)
        items.append(
            {"code": "daily_cap", "zh": f"每日封顶 {cap}元", "en": f"Daily cap {cap} yuan"}
        )
    return {
        "id": tariff.id,
        "version": tariff.version,
        "name": tariff.name,
        "kind": tariff.kind,
        "summary_zh": "，".join(item["zh"] for item in items),
        "summary_en": "; ".join(item["en"] for item in items),
        "items": items,
    }


def _yuan(fen: Decimal | int) -> str:
    """Fen as a short yuan figure: 100 -> "1", 150 -> "1.5", 8 -> "0.08"."""
    return format(Decimal(fen).scaleb(-2).normalize(), "f")


def _hour_price(fen_per_hour: Decimal) -> tuple[str, str]:
    """A time rate as residents read it: "1元/4小时" when some whole number of minutes
    bills exactly 1 元, otherwise "x元/小时"."""
    if fen_per_hour == 0:
        return "免费", "free"
    rate = Fraction(fen_per_hour)
    minutes = _round_half_up(6000 / rate)
    if minutes > 0 and _round_half_up(rate * minutes / 60) == 100:
        hours, rest = divmod(minutes, 60)
        if rest == 0:
            return f"1元/{hours}小时", f"1 yuan per {hours} h"
        if rest == 30:
            return f"1元/{hours}.5小时", f"1 yuan per {hours}.5 h"
        if hours == 0:
            return f"1元/{rest}分钟", f"1 yuan per {rest} min"
        return f"1元/{hours}小时{rest}分钟", f"1 yuan per {hours} h {rest} min"
    price = _yuan(fen_per_hour)
    return f"{price}元/小时", f"{price} yuan per hour"
