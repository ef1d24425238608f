"""Every role against every route: nobody reads or changes what is not theirs.

Two compounds, `alpha` (shed `sa`) and `beta` (shed `sb`). Every request
below is about alpha. Per route: who must get through (any answer but 401,
403) and who must be refused (401 when nobody is logged in, 403 otherwise);
lists that are filtered rather than refused must hold nothing of alpha for
the others. A route of the app that is in no table fails the test, so a new
route cannot skip the matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from api.models import Alarm, Order, User

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db"]

WHO = ("nobody", "resident", "staff_a", "office_a", "staff_b", "office_b", "admin_a",
       "admin_all", "token")  # fmt: skip
STAFF_A = {"staff_a", "admin_a", "admin_all", "token"}
ADMINS = {"admin_all", "token"}
LOGGED_IN = set(WHO) - {"nobody"}
READ_REPORTS_A = {"office_a", "admin_a", "admin_all", "token"}

# Routes anyone may call, and the sheds' own (shed token: tests/test_api_admin_auth.py).
PUBLIC = {
    "GET /healthz", "GET /api/v1/sheds/{shed_id}/status", "GET /api/v1/public/sheds/{shed_id}",
    "GET /api/v1/public/sheds/{shed_id}/sockets/{port}", "POST /api/v1/orders",
    "GET /api/v1/orders/{out_trade_no}", "POST /api/v1/orders/{out_trade_no}/stop",
    "POST /api/v1/auth/sms", "POST /api/v1/auth/login", "POST /api/v1/auth/logout",
    "GET /api/v1/dev/sms", "POST /pay/notify/wechatpay", "POST /api/v1/auth/password",
    "GET /api/v1/money/{compound_id}", "GET /api/v1/money/shed/{shed_id}",
    "GET /api/v1/consultations/{consultation_id}",
}  # fmt: skip
SHED = {
    "POST /api/v1/sheds/{shed_id}/uplink", "GET /api/v1/sheds/{shed_id}/commands",
    "POST /api/v1/sheds/{shed_id}/commands/{command_id}/result",
    "POST /api/v1/sheds/{shed_id}/live",
}  # fmt: skip


@dataclass(frozen=True)
class Case:
    method: str
    route: str  # the app's path template
    path: str  # the request
    allowed: set[str]
    refused: set[str]
    body: dict[str, Any] | None = None


def cases(ids: dict[str, str]) -> list[Case]:
    shed_a, alarm, order, uid = ids["shed"], ids["alarm"], ids["order"], ids["card"]
    s = f"/api/v1/staff/sheds/{shed_a}"
    tariff = {"id": "alpha-price", "name": "1元/4小时", "kind": "power_tier",
              "tiers": [{"max_w": 1100, "fen_per_hour": "25"}]}  # fmt: skip
    staff = [
        ("GET", "/api/v1/staff/board", f"/api/v1/staff/board?shed_id={shed_a}", None),
        ("GET", "/api/v1/staff/alarms", f"/api/v1/staff/alarms?shed_id={shed_a}", None),
        ("POST", "/api/v1/staff/sheds/{shed_id}/alarms/{alarm_id}/ack",
         f"{s}/alarms/{alarm}/ack", {"note": "checked"}),
        ("POST", "/api/v1/staff/sheds/{shed_id}/sockets/{port}/stop", f"{s}/sockets/1/stop", {}),
        ("POST", "/api/v1/staff/sheds/{shed_id}/sockets/{port}/disable",
         f"{s}/sockets/1/disable", {"reason": "repair"}),
        ("POST", "/api/v1/staff/sheds/{shed_id}/sockets/{port}/enable",
         f"{s}/sockets/1/enable", {}),
        ("GET", "/api/v1/staff/compounds/{compound_id}/tariff",
         "/api/v1/staff/compounds/alpha/tariff", None),
        ("POST", "/api/v1/staff/compounds/{compound_id}/tariff",
         "/api/v1/staff/compounds/alpha/tariff", {"tariff": tariff}),
        ("GET", "/api/v1/staff/compounds/{compound_id}/cards",
         "/api/v1/staff/compounds/alpha/cards", None),
        ("POST", "/api/v1/staff/compounds/{compound_id}/cards",
         "/api/v1/staff/compounds/alpha/cards", {"uid": "0A0B0C0E"}),
        ("POST", "/api/v1/staff/compounds/{compound_id}/cards/{uid}/plans",
         f"/api/v1/staff/compounds/alpha/cards/{uid}/plans",
         {"starts_ms": 1, "ends_ms": 2, "price_fen": 3000}),
        ("POST", "/api/v1/staff/orders/{out_trade_no}/refund",
         f"/api/v1/staff/orders/{order}/refund", {"note": "goodwill", "amount_fen": 1}),
    ]  # fmt: skip
    found = [Case(m, r, p, STAFF_A, set(WHO) - STAFF_A, b) for m, r, p, b in staff]
    # Lists filtered by compound: the others get 403 (no staff role) or nothing of alpha.
    for route in ("/api/v1/staff/audit", "/api/v1/staff/refunds"):
        found.append(Case("GET", route, route, STAFF_A,
                          {"nobody", "resident", "office_a", "office_b"}))  # fmt: skip
    admin = [
        ("GET", "/api/v1/admin/compounds", None), ("POST", "/api/v1/admin/compounds",
                                                   {"id": "gamma", "name": "x"}),
        ("GET", "/api/v1/admin/sheds", None),
        ("POST", "/api/v1/admin/sheds", {"id": "sg", "name": "x", "compound_id": "alpha"}),
        ("GET", f"/api/v1/admin/sheds/{shed_a}", None),
        ("POST", f"/api/v1/admin/sheds/{shed_a}/commands",
         {"kind": "enable", "data": {"port": 2}}),
        ("GET", f"/api/v1/admin/sheds/{shed_a}/commands", None),
        ("GET", f"/api/v1/admin/sheds/{shed_a}/commands/c-none", None),
        ("GET", f"/api/v1/admin/sheds/{shed_a}/sessions", None),
        ("POST", "/api/v1/admin/tariffs", {"compound_id": "alpha", "tariff": {**tariff,
                                                                            "version": 99}}),
        ("GET", "/api/v1/admin/users", None),
        ("POST", "/api/v1/admin/users", {"login": "new-user", "password": "long enough",
                                         "grants": [{"role": "staff", "compound_id": "alpha"}]}),
        ("PATCH", f"/api/v1/admin/users/{ids['user']}", {"disabled": False}),
        ("GET", "/api/v1/admin/refunds", None),
        ("POST", "/api/v1/admin/refunds/Rnone/retry", None),
        ("GET", "/api/v1/admin/notifications/refused", None),
        # last: it retires the shed's token
        ("POST", f"/api/v1/admin/sheds/{shed_a}/token", None),
    ]  # fmt: skip
    templates = {
        f"/api/v1/admin/sheds/{shed_a}": "/api/v1/admin/sheds/{shed_id}",
        f"/api/v1/admin/users/{ids['user']}": "/api/v1/admin/users/{user_id}",
        "/api/v1/admin/refunds/Rnone/retry": "/api/v1/admin/refunds/{out_refund_no}/retry",
    }

    def template(path: str) -> str:
        for concrete, tmpl in templates.items():
            if path.startswith(concrete):
                return tmpl + path[len(concrete) :]
        return path

    for method, path, body in admin:
        route = template(path).replace("/commands/c-none", "/commands/{command_id}")
        found.append(Case(method, route, path, ADMINS, set(WHO) - ADMINS, body))
    found += [
        Case("GET", "/api/v1/auth/me", "/api/v1/auth/me", LOGGED_IN, {"nobody"}),
        # a user's own charges; the admin token is nobody's
        Case(
            "GET", "/api/v1/me/sessions", "/api/v1/me/sessions", LOGGED_IN - {"token"}, {"nobody"}
        ),
    ]
    # The community office reports, where they are served (their own rules are theirs to test).
    reports = [("/api/v1/reports", "/api/v1/reports"),
               ("/api/v1/reports/{compound_id}", "/api/v1/reports/alpha"),
               ("/api/v1/reports/{compound_id}/export",
                "/api/v1/reports/alpha/export"),
               ("/api/v1/reports/{compound_id}/capacity",
                "/api/v1/reports/alpha/capacity")]  # fmt: skip
    for route, path in reports:
        refused = {"nobody", "resident"} | (set() if route == "/api/v1/reports"
                                            else {"office_b", "staff_b"})  # fmt: skip
        found.append(Case("GET", route, path, READ_REPORTS_A, refused))
    # The money page's and the consultations' office side (docs/money-page.md).
    not_office_a = {"nobody", "resident", "staff_a", "staff_b", "office_b"}
    office: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("PUT", "/api/v1/money/{compound_id}/settings", "/api/v1/money/alpha/settings",
         {"grid_fen_per_kwh": 60}),
        ("POST", "/api/v1/money/{compound_id}/expenses", "/api/v1/money/alpha/expenses",
         {"month": "2026-11", "amount_fen": 1, "note": "x"}),
        ("PUT", "/api/v1/money/{compound_id}/meters/{shed_id}/{month}",
         f"/api/v1/money/alpha/meters/{shed_a}/2026-11", {"energy_wh": 1}),
        ("GET", "/api/v1/households/{compound_id}", "/api/v1/households/alpha", None),
        ("POST", "/api/v1/households/{compound_id}/import", "/api/v1/households/alpha/import",
         None),
        ("POST", "/api/v1/consultations/{compound_id}", "/api/v1/consultations/alpha",
         {"kind": "text", "title": "x", "closes_ms": 2**50, "threshold_pct": 67}),
    ]  # fmt: skip
    found += [Case(m, r, p, READ_REPORTS_A, not_office_a, b) for m, r, p, b in office]
    # A resident's answer (the consultation's own rules: tests/test_consultations.py).
    for method, route, body in (("GET", "/mine", None), ("PUT", "/answer", {"answer": "yes"})):
        found.append(Case(method, "/api/v1/consultations/{consultation_id}" + route,
                          f"/api/v1/consultations/99{route}", set(), {"nobody"}, body))  # fmt: skip
    found.append(Case("POST", "/api/v1/consultations/{consultation_id}/apply",
                      "/api/v1/consultations/99/apply", set(), {"nobody"}))  # fmt: skip
    return found


async def setup(api: Api) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    shed_a, _ = await api.register_shed("sa", compound_id="alpha", ports=[1, 2])
    await api.register_shed("sb", compound_id="beta", ports=[1])
    people = {
        "nobody": {},
        "resident": await api.user(None),
        "staff_a": await api.user("staff", "alpha"),
        "office_a": await api.user("office", "alpha"),
        "staff_b": await api.user("staff", "beta"),
        "office_b": await api.user("office", "beta"),
        "admin_a": await api.user("admin", "alpha"),
        "admin_all": await api.user("admin", None),
        "token": api.admin,
    }
    now = api.clock.now
    with api.app.state.ctx.sessions() as db, db.begin():
        db.add(Alarm(shed_id=shed_a, id="a-1", kind="refund_failed", raised_ms=now, detail="x",
                     active=True, reported_ms=now, updated_ms=now))  # fmt: skip
        db.add(Order(out_trade_no="EBSALPHA0001", shed_id=shed_a, port=1, amount_fen=300,
                     mode="amount", status="closed", created_ms=now, updated_ms=now,
                     paid_fen=300, billed_fen=300, refund_fen=0))  # fmt: skip
        user_id = db.scalars(select(User.id).order_by(User.id)).first()
    card = await api.client.post("/api/v1/staff/compounds/alpha/cards", json={"uid": "0A0B0C0D"},
                                 headers=api.admin)  # fmt: skip
    assert card.status_code == 200, card.text
    ids = {"shed": shed_a, "alarm": "a-1", "order": "EBSALPHA0001", "card": "0A0B0C0D",
           "user": str(user_id)}  # fmt: skip
    return people, ids


async def test_every_role_against_every_route(api: Api) -> None:
    people, ids = await setup(api)
    matrix = cases(ids)
    paths = api.app.openapi()["paths"]
    served = {f"{m.upper()} {p}" for p, ops in paths.items() for m in ops if m != "head"}
    covered = {f"{c.method} {c.route}" for c in matrix} | PUBLIC | SHED
    assert served - covered == set(), "routes missing from the access matrix"
    matrix = [c for c in matrix if f"{c.method} {c.route}" in served]
    failures = []
    for case in matrix:
        for who in case.allowed | case.refused:
            answer = await api.client.request(case.method, case.path, json=case.body,
                                              headers=people[who])  # fmt: skip
            status = answer.status_code
            if who in case.allowed and status in (401, 403):
                failures.append(f"{who} refused {case.method} {case.path}: {answer.text}")
            if who in case.refused and status != (401 if who == "nobody" else 403):
                failures.append(f"{who} got {status} for {case.method} {case.path}")
    assert failures == [], "\n".join(failures)


async def test_filtered_lists_hold_nothing_of_another_compound(api: Api) -> None:
    people, ids = await setup(api)
    await api.client.post(f"/api/v1/staff/sheds/{ids['shed']}/sockets/1/disable",
                          json={"reason": "repair"}, headers=people["staff_a"])  # fmt: skip
    for who, sees_alpha in (("staff_a", True), ("staff_b", False), ("admin_all", True)):
        headers = people[who]
        board = (await api.client.get("/api/v1/staff/board", headers=headers)).json()
        assert ("sa" in [s["shed_id"] for s in board["sheds"]]) is sees_alpha, who
        assert ("sb" in [s["shed_id"] for s in board["sheds"]]) is (who != "staff_a"), who
        alarms = (await api.client.get("/api/v1/staff/alarms", headers=headers)).json()
        assert bool(alarms) is sees_alpha, who
        audit = (await api.client.get("/api/v1/staff/audit", headers=headers)).json()
        assert any(e["shed_id"] == "sa" for e in audit) is sees_alpha, who
    other = await api.client.get("/api/v1/staff/board?shed_id=sa", headers=people["staff_b"])
    assert (other.status_code, other.json()["code"]) == (403, "not_your_compound")
