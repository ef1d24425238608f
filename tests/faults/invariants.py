"""The invariant check every fault scenario ends with.

It reads the edge database (and the central one where the scenario has it)
and the simulator's ground truth, and fails with every violation it found:

1. every session opened is closed exactly once: each row has an end, each
   start the local API answered is stored, and the outbox (or the central
   API) holds exactly one closing record per session;
2. billed energy equals the register difference (last_wh - first_wh, across
   a wrap) and is within 1 Wh of the energy that really flowed in the
   session's relay periods;
3. no two sessions overlap on a socket; no relay was on without a session;
4. every card balance equals its top-ups minus its debits, with exactly one
   debit per card session, of what the session billed;
5. paid = billed + refunded, to the fen, for every order;
6. every alarm raised is recorded (the expected kinds, and every alarm the
   controller holds);
7. every socket that should be off is off (the simulator's relays).

`Figures` says what was checked, for the scenario to print.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from tests.faults.harness import FaultShed
from tests.faults.sim import RelayPeriod

U32 = 1 << 32
WH_TOLERANCE = 1.0
FIGURES: list[dict[str, Any]] = []  # every scenario's figures, printed at the end of the run


@dataclass
class Figures:
    scenario: str
    sessions: int = 0
    closed: int = 0
    kills: int = 0
    crashes: int = 0
    restarts: int = 0
    billed_wh: int = 0
    truth_wh: float = 0.0
    max_dev_wh: float = 0.0
    relay_periods: int = 0
    alarms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def line(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.extra.items())
        return (
            f"{self.scenario}: sessions={self.sessions} closed={self.closed} kills={self.kills} "
            f"crashes={self.crashes} restarts={self.restarts} billed_wh={self.billed_wh} "
            f"truth_wh={self.truth_wh:.1f} max_dev_wh={self.max_dev_wh:.2f} "
            f"relay_periods={self.relay_periods} alarms={self.alarms}{extra} "
            f"violations={len(self.violations)}"
        )


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def check(
    shed: FaultShed,
    scenario: str,
    *,
    expect_alarms: tuple[str, ...] = (),
    closing_records: bool = True,
    extra: dict[str, Any] | None = None,
) -> Figures:
    """Check every invariant; print and keep the figures; fail with every violation."""
    fig = Figures(scenario, kills=shed.kills, crashes=len(shed.crashes),
                  restarts=max(0, shed.starts - 1), extra=dict(extra or {}))  # fmt: skip
    bad = fig.violations
    rows = [dict(r) for r in shed.query("SELECT * FROM sessions ORDER BY port, started_ms")]
    fig.sessions = len(rows)
    by_id = {r["id"]: r for r in rows}
    periods, true_now = shed.sim_.truth()
    fig.relay_periods = len(periods)

    # 0. the controller ended only when the scenario ended it
    shed.note_exit()
    for exit_ in shed.unexpected_exits:
        bad.append(f"the controller ended by itself: {exit_}")

    # 1. closed exactly once
    for r in rows:
        if r["ended_ms"] is None or r["end_reason"] is None:
            bad.append(f"session {r['id']} on socket {r['port']} never closed")
        else:
            fig.closed += 1
            if r["ended_ms"] < r["started_ms"]:
                bad.append(f"session {r['id']} ended before it started")
    for sid in sorted(shed.started_ids - set(by_id)):
        bad.append(f"session {sid} was started (201) but is not stored")
    if closing_records:
        closes: dict[str, int] = defaultdict(int)
        for rec in shed.query("SELECT key, data FROM outbox WHERE kind = 'session'"):
            if _json(rec["data"]).get("ended_ms") is not None:
                closes[rec["key"]] += 1
        for r in rows:
            if r["ended_ms"] is not None and closes.get(r["id"], 0) != 1:
                bad.append(f"session {r['id']}: {closes.get(r['id'], 0)} closing records "
                           "in the outbox, not 1")  # fmt: skip

    # 2. energy: register difference, and ground truth
    owner = _assign(rows, periods, bad)
    for r in rows:
        flags = _json(r["flags"]) or []
        for flag in ("energy_mismatch", "meter_jump"):
            if flag in flags:
                bad.append(f"session {r['id']} flagged {flag}")
        if r["first_wh"] is not None and r["last_wh"] is not None:
            delta = (r["last_wh"] - r["first_wh"]) % U32
            if delta != r["energy_wh"]:
                bad.append(f"session {r['id']}: billed {r['energy_wh']} Wh, registers say "
                           f"{delta} Wh ({r['first_wh']} -> {r['last_wh']})")  # fmt: skip
        truth = sum(p.energy_wh(true_now[p.port]) for p in owner.get(r["id"], []))
        fig.billed_wh += r["energy_wh"]
        fig.truth_wh += truth
        dev = abs(r["energy_wh"] - truth)
        fig.max_dev_wh = max(fig.max_dev_wh, dev)
        if r["ended_ms"] is not None and dev > WH_TOLERANCE:
            bad.append(f"session {r['id']} on socket {r['port']} ({r['end_reason']}, "
                       f"flags {flags}): billed {r['energy_wh']} Wh, {truth:.2f} Wh flowed")

    # 3. no overlap on a socket
    last: dict[int, dict[str, Any]] = {}
    for r in rows:  # ordered by port, started_ms
        prev = last.get(r["port"])
        if prev is not None and (prev["ended_ms"] is None or prev["ended_ms"] > r["started_ms"]):
            bad.append(f"sessions {prev['id']} and {r['id']} overlap on socket {r['port']}")
        last[r["port"]] = r

    # 4. cards
    ledger = [dict(x) for x in shed.query("SELECT * FROM card_ledger")]
    for card in shed.query("SELECT uid, balance_fen FROM cards"):
        total = sum(x["delta_fen"] for x in ledger if x["uid"] == card["uid"])
        if total != card["balance_fen"]:
            bad.append(f"card {card['uid']}: balance {card['balance_fen']} fen, "
                       f"top-ups minus debits {total} fen")  # fmt: skip
    debits: dict[str, list[int]] = defaultdict(list)
    for x in ledger:
        if x["session_id"] is not None:
            debits[x["session_id"]].append(-x["delta_fen"])
    for r in rows:
        if r["auth_kind"] == "card" and r["ended_ms"] is not None:
            if debits.get(r["id"]) != [r["billed_fen"]]:
                bad.append(f"card session {r['id']} billed {r['billed_fen']} fen, "
                           f"debits {debits.get(r['id'], [])}")  # fmt: skip
        elif r["auth_kind"] != "card" and r["id"] in debits:
            bad.append(f"{r['auth_kind']} session {r['id']} debited a card")

    # 5. paid = billed + refunded
    for r in rows:
        closed_order = r["auth_kind"] == "order" and r["ended_ms"] is not None
        if closed_order and r["billed_fen"] + r["refund_fen"] != r["prepaid_fen"]:
            bad.append(f"order session {r['id']}: paid {r['prepaid_fen']} fen, billed "
                       f"{r['billed_fen']} + refunded {r['refund_fen']}")  # fmt: skip

    # 6. alarms
    alarms = [dict(a) for a in shed.query("SELECT * FROM alarms")]
    fig.alarms = len(alarms)
    kinds = {a["kind"] for a in alarms}
    for kind in expect_alarms:
        if kind not in kinds:
            bad.append(f"no {kind} alarm recorded (recorded: {sorted(kinds)})")
    if shed.alive():
        stored = {a["id"] for a in alarms}
        for a in shed.status()["alarms"]:
            if a["id"] not in stored:
                bad.append(f"alarm {a['kind']} {a['id']} held by the controller is not stored")

    # 7. sockets that should be off are off
    open_ports = {r["port"] for r in rows if r["ended_ms"] is None}
    for port, on in sorted(shed.sim_.relays().items()):
        if on and port not in open_ports:
            bad.append(f"socket {port}: relay on without an open session")

    FIGURES.append(asdict(fig))
    print(fig.line())
    if bad:
        shown = "\n  ".join(bad[:40])
        more = f"\n  ... and {len(bad) - 40} more" if len(bad) > 40 else ""
        raise AssertionError(f"{fig.line()}\n  {shown}{more}")
    return fig


def _assign(
    rows: list[dict[str, Any]], periods: list[RelayPeriod], bad: list[str]
) -> dict[str, list[RelayPeriod]]:
    """Each relay period belongs to the newest session its socket had started by then."""
    by_port: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_port[r["port"]].append(r)
    owner: dict[str, list[RelayPeriod]] = defaultdict(list)
    for p in periods:
        candidates = [r for r in by_port.get(p.port, []) if r["started_ms"] <= p.on_ms]
        if not candidates:
            bad.append(f"socket {p.port}: relay on at {p.on_ms} with no session started")
            continue
        session = max(candidates, key=lambda r: r["started_ms"])
        if session["ended_ms"] is not None and p.on_ms > session["ended_ms"]:
            bad.append(f"socket {p.port}: relay on at {p.on_ms} after session {session['id']} "
                       f"closed at {session['ended_ms']}")  # fmt: skip
        owner[session["id"]].append(p)
    return owner
