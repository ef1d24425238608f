"""The community office report pages (docs/reports.md).

| page | what |
|---|---|
| `GET /reports` | the compounds the user may read (straight to the report if one) |
| `GET /reports/{compound_id}?period=month&value=2026-11` | summary, charts, tables, downloads |

Server-rendered HTML with server-side SVG charts; no script. The data comes
from the JSON API (`/api/v1/reports/...`, api/routes/reports.py) through
`ApiClient`, as the logged-in user: access is decided there, once. Not logged
in: to `/login?next=...`. Downloads link to the API's export route, which the
same login cookie opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from api.reports import charts, export
from api.reports.labels import Lang, label, weekday
from api.reports.model import FIGURES, Table
from api.reports.periods import PERIOD_KINDS, Period, local_date, parse_period, period_of
from api.web.client import ApiClient, api_client
from api.web.routes import SECURITY_HEADERS
from api.web.routes import _env as web_templates  # one Jinja2 environment for every page

router = APIRouter(include_in_schema=False)
ApiDep = Annotated[ApiClient, Depends(api_client)]
LangQuery = Annotated[str | None, Query(alias="lang", max_length=8)]
KindQuery = Annotated[str, Query(alias="period", max_length=8)]
ValueQuery = Annotated[str | None, Query(alias="value", max_length=16)]
CSV_TABLES: Final = ("days", "sheds", "sockets", "end_reasons", "hours", "heatmap", "summary")


def _lang(value: str | None) -> Lang:
    return "en" if value is not None and value.lower().startswith("en") else "zh"


def _page(
    request: Request, template: str, lang: Lang, *, status: int = 200, **context: Any
) -> HTMLResponse:
    def t(key: str, **values: object) -> str:
        return label(key, lang).format(**values)

    other = "zh" if lang == "en" else "en"
    query = dict(request.query_params) | {"lang": other}
    html = (
        web_templates()
        .get_template(template)
        .render(
            lang=lang,
            html_lang="en" if lang == "en" else "zh-CN",
            t=t,
            switch_url=f"{request.url.path}?{urlencode(query)}",
            **context,
        )
    )
    return HTMLResponse(html, status, headers={"Cache-Control": "no-store", **SECURITY_HEADERS})


def _problem_page(request: Request, lang: Lang, status: int, code: str) -> Response:
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", 303)
    key = {403: "forbidden", 404: "not_found", 422: "bad_period"}.get(status, "unavailable")
    shown = status if status in (403, 404, 422) else 503
    return _page(
        request, "reports/error.html", lang, status=shown, message=label(key, lang), code=code
    )


@router.get("/reports")
async def reports_index(request: Request, api: ApiDep, lang: LangQuery = None) -> Response:
    lg = _lang(lang)
    answer = await api.get("/api/v1/reports")
    if answer.status == 403:  # logged in, but not office, staff or admin anywhere
        return _page(request, "reports/index.html", lg, compounds=[], q=_q(lg))
    if not answer.ok:
        return _problem_page(request, lg, answer.status, answer.problem.code)
    compounds = answer.body if isinstance(answer.body, list) else []
    if len(compounds) == 1:
        return RedirectResponse(f"/reports/{quote(compounds[0]['id'])}{_q(lg)}", 303)
    return _page(request, "reports/index.html", lg, compounds=compounds, q=_q(lg))


def _q(lang: Lang) -> str:
    return "?lang=en" if lang == "en" else ""


@dataclass(frozen=True, slots=True)
class ShownTable:
    name: str
    title: str
    header: list[str]
    rows: list[list[Any]]
    csv_url: str


@router.get("/reports/{compound_id}")
async def report_page(
    request: Request,
    compound_id: str,
    api: ApiDep,
    kind: KindQuery = "month",
    value: ValueQuery = None,
    lang: LangQuery = None,
) -> Response:
    lg = _lang(lang)
    params: dict[str, str] = {"period": kind if kind in PERIOD_KINDS else "month"}
    if value:
        params["value"] = value
    answer = await api.get(f"/api/v1/reports/{quote(compound_id)}?{urlencode(params)}")
    if not answer.ok:
        return _problem_page(request, lg, answer.status, answer.problem.code)
    data = answer.json_dict()
    period = parse_period(data["period"]["kind"], data["period"]["label"])
    tables = {
        name: Table(name, list(t["columns"]), [list(r) for r in t["rows"]])
        for name, t in data["tables"].items()
    }
    base = f"/api/v1/reports/{quote(compound_id)}/export"
    query = {"period": period.kind, "value": period.label, "lang": lg}

    def download(fmt: str, table: str | None = None) -> str:
        extra = {"format": fmt} | ({"table": table} if table else {})
        return f"{base}?{urlencode(query | extra)}"

    shown = [
        ShownTable(
            name,
            label(name, lg),
            export.header(tables[name], lg),
            export.cells(tables[name], lg),
            download("csv", name),
        )
        for name in CSV_TABLES
    ]
    summary = {row[0]: row[1] for row in tables["summary"].rows}
    last_day = local_date(period.end_ms - 1)
    plan = await api.get(f"/api/v1/reports/{quote(compound_id)}/capacity?{urlencode(params)}")
    capacity = None
    if plan.ok:  # the page still shows the report if the planning cannot be had
        body = plan.json_dict()
        capacity = _capacity(Table("capacity", list(body["columns"]), body["rows"]), lg,
                             download("csv", "capacity"))  # fmt: skip
    return _page(
        request,
        "reports/report.html",
        lg,
        compound=data["compound"],
        period=period,
        kinds=PERIOD_KINDS,
        range_text=label("period_range", lg).format(
            start=local_date(period.start_ms).isoformat(), end=last_day.isoformat()
        ),
        socket_count=data["socket_count"],
        cards=[(name, label(name, lg), summary[name]) for name in FIGURES],
        charts=_charts(tables, lg),
        tables=shown,
        capacity=capacity,
        xlsx_url=download("xlsx"),
        csv_all_url=download("csv"),
        nav=_nav(compound_id, period, lg),
        q=_q(lg),
    )


@dataclass(frozen=True, slots=True)
class ShownCapacity:
    charts: list[tuple[str, str, Markup]]  # (shed id, caption, SVG)
    table: ShownTable


def _capacity(table: Table, lang: Lang, csv_url: str) -> ShownCapacity:
    """A chart per shed that had turned-away residents, and the table of every shed."""
    by_shed: dict[str, list[dict[str, Any]]] = {}
    for row in table.as_dicts():
        by_shed.setdefault(str(row["shed"]), []).append(row)
    shown_charts = []
    for shed, rows in by_shed.items():
        if not any(int(r["turned_away"]) for r in rows):
            continue
        caption = label("chart_capacity", lang).format(shed=shed)
        svg = charts.bars(
            caption,
            [f"+{int(r['extra_sockets'])}" for r in rows],
            [float(r["served_pct"]) for r in rows],
            unit="%",
            every=2,
        )
        shown_charts.append((shed, caption, svg))
    shown = ShownTable(
        "capacity", label("capacity", lang), export.header(table, lang), table.rows, csv_url
    )
    return ShownCapacity(shown_charts, shown)


def _nav(compound_id: str, period: Period, lang: Lang) -> dict[str, str]:
    def link(p: Period) -> str:
        query = {"period": p.kind, "value": p.label} | ({"lang": "en"} if lang == "en" else {})
        return f"/reports/{quote(compound_id)}?{urlencode(query)}"

    before = period_of(period.kind, period.start_ms - 1)
    after = period_of(period.kind, period.end_ms)
    return {"previous": link(before), "next": link(after)}


def _charts(tables: dict[str, Table], lang: Lang) -> list[tuple[str, Markup]]:
    """(caption, SVG) of each chart."""
    days = tables["days"].as_dicts()
    day_labels = [str(d["date"])[5:] for d in days]
    every = 1 if len(days) <= 7 else 3
    hours = tables["hours"].as_dicts()
    hour_labels = [f"{int(h['hour']):02d}" for h in hours]
    ends = tables["end_reasons"].as_dicts()
    grid = [[int(v) for v in row[1:]] for row in tables["heatmap"].rows]

    def title(key: str) -> str:
        return label(key, lang)

    sessions = [float(d["sessions"]) for d in days]
    energy = [float(d["energy_kwh"]) for d in days]
    utilisation = [float(h["utilisation_pct"]) for h in hours]
    unserved = [float(h["unserved"]) for h in hours]
    weekdays = [weekday(i, lang) for i in range(7)]
    end_names = [label(f"end_{e['end_reason']}", lang) for e in ends]
    charted = [
        ("chart_sessions", charts.bars(title("chart_sessions"), day_labels, sessions, every=every)),
        (
            "chart_energy",
            charts.bars(title("chart_energy"), day_labels, energy, unit=" kWh", every=every),
        ),
        (
            "chart_utilisation",
            charts.bars(title("chart_utilisation"), hour_labels, utilisation, unit="%", every=2),
        ),
        (
            "chart_heatmap",
            charts.heatmap(title("chart_heatmap"), weekdays, [f"{h:02d}" for h in range(24)], grid),
        ),
        (
            "chart_ends",
            charts.hbars(title("chart_ends"), end_names, [float(e["sessions"]) for e in ends]),
        ),
        (
            "chart_unserved",
            charts.bars(
                title("chart_unserved"), hour_labels, unserved, every=2, color=charts.BAR_ALT
            ),
        ),
    ]
    return [(title(key), svg) for key, svg in charted]
