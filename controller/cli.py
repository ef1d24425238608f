"""The `ebshed` command line. Every command and sub-command has `--help`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

# Plain help (`rich_markup_mode=None`): typer's rich panels label every flag `<bool>`.
app = typer.Typer(
    help="Open e-bike charging shed controller.", no_args_is_help=True, add_completion=False,
    rich_markup_mode=None,
)
controller_app = typer.Typer(help="The edge controller of one shed.", no_args_is_help=True)
sim_app = typer.Typer(help="Simulated devices.", no_args_is_help=True)
port_app = typer.Typer(help="Local operator commands for one socket.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks (figures go to docs/benchmarks.md).", no_args_is_help=True)
user_app = typer.Typer(help="Central API users (staff, office, admin).", no_args_is_help=True)
deploy_app = typer.Typer(help="Files for installing a shed.", no_args_is_help=True)
app.add_typer(controller_app, name="controller")
app.add_typer(sim_app, name="sim")
app.add_typer(port_app, name="port")
app.add_typer(bench_app, name="bench")
app.add_typer(user_app, name="user")
app.add_typer(deploy_app, name="deploy")

DEFAULT_CONTROLLER = "http://127.0.0.1:8181"
ApiDatabaseUrl = Annotated[
    str | None,
    typer.Option(envvar="EBSHED_API_DATABASE_URL", help="The central API's database."),
]


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load(config: Path) -> Any:
    from controller.core.config import ConfigError
    from controller.settings import load_settings

    try:
        return load_settings(config)
    except ConfigError as err:
        _fail(f"{err} [{err.code}]")


@app.command()
def demo(
    hours: Annotated[
        float | None, typer.Option(help="Simulated hours to run; default: until Ctrl-C.")
    ] = None,
    speed: Annotated[str, typer.Option(help="Simulated seconds per real second, or 'max'.")] = "60",
    summary_json: Annotated[
        Path | None, typer.Option("--summary-json", help="Write a JSON summary here at the end.")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="Keep the shed's database here (default: a temporary folder)."
        ),
    ] = None,
    sockets: Annotated[
        int, typer.Option(help="Sockets in the simulated shed (12 per board).")
    ] = 24,
    seed: Annotated[int, typer.Option(help="Random seed of the simulated day.")] = 7,
    start_hour: Annotated[
        float, typer.Option(help="Local hour (China time) the simulated day starts at.")
    ] = 18.0,
    headless: Annotated[
        bool, typer.Option(help="No live view (implied by --speed max); progress lines instead.")
    ] = False,
    transport: Annotated[
        str, typer.Option(help="Socket boards on mqtt, on an RS-485 bus (modbus), or mixed.")
    ] = "mqtt",
    broker: Annotated[
        str,
        typer.Option(help="MQTT broker: auto (mosquitto if on PATH, else amqtt), amqtt or "
                          "mosquitto."),
    ] = "auto",
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log INFO lines too (to demo.log).")
    ] = False,
) -> None:
    """Run a whole simulated shed: broker, controller and e-bikes, in one process."""
    from simulators.demo import DemoOptions, mosquitto_path, run_demo

    _logging(verbose)
    if speed != "max":
        try:
            if float(speed) <= 0:
                raise ValueError
        except ValueError:
            _fail("--speed must be a positive number or 'max'")
    if speed == "max" and hours is None:
        _fail("--speed max needs --hours")
    if transport not in ("mqtt", "modbus", "mixed"):
        _fail("--transport must be mqtt, modbus or mixed")
    if broker not in ("auto", "amqtt", "mosquitto"):
        _fail("--broker must be auto, amqtt or mosquitto")
    if broker == "mosquitto" and mosquitto_path() is None:
        _fail("--broker mosquitto: no mosquitto on PATH (apt-get install mosquitto)")
    if hours is not None and hours <= 0:
        _fail("--hours must be positive")
    live = not headless and speed != "max"
    opts = DemoOptions(
        hours=hours,
        speed=speed,
        data_dir=data_dir,
        sockets=sockets,
        seed=seed,
        start_hour=start_hour,
        live=live,
        transport=transport,  # type: ignore[arg-type]
        broker=broker,  # type: ignore[arg-type]
        progress_every_s=None if live else 10.0,
        log_file=True,
    )
    summary = asyncio.run(run_demo(opts))
    if summary_json is not None:
        summary_json.write_text(json.dumps(summary, indent=2, ensure_ascii=False), "utf-8")
    brief = {
        k: summary[k]
        for k in (
            "sessions_started",
            "sessions_closed",
            "billed_wh",
            "ground_truth_wh",
            "billed_fen",
            "end_reasons",
            "alarms",
        )
    }
    typer.echo(json.dumps(brief, ensure_ascii=False))


@controller_app.command("run")
def controller_run(
    config: Annotated[Path, typer.Option(help="Shed config (TOML), see deploy/shed.example.toml.")],
    http: Annotated[
        str | None, typer.Option(help="Local operator API address, host:port.")
    ] = "127.0.0.1:8181",
    verbose: Annotated[
        bool,
        typer.Option("--verbose/--quiet", "-v/-q",
                     help="Log connections and sessions (INFO), or warnings only."),
    ] = True,
) -> None:
    """Run the edge controller of one shed against a real MQTT broker."""
    from controller.clock import RealClock
    from controller.runtime import TaskDied, run_forever

    _logging(verbose)
    settings = _load(config)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_forever(settings, RealClock(), http))
    except TaskDied as err:  # exit non-zero, so that systemd restarts the controller
        typer.echo(f"controller stopped: {err}", err=True)
        raise typer.Exit(70) from err


@sim_app.command("shed")
def sim_shed(
    config: Annotated[Path, typer.Option(help="The same shed config the controller uses.")],
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed of the simulated arrivals.")] = 7,
    credentials: Annotated[
        Path | None,
        typer.Option(envvar="EBSHED_DEVICE_CREDENTIALS",
                     help="Devices log in as themselves: credentials.toml of deploy broker."),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose/--quiet", "-v/-q",
                     help="Log connections and sessions (INFO), or warnings only."),
    ] = True,
) -> None:
    """Simulated socket boards (with e-bikes arriving) for a shed config."""
    import os

    from controller.mqtt_logins import CredentialsError, read_credentials
    from simulators.demo import run_sim_shed

    _logging(verbose)
    settings = _load(config)
    if credentials is not None:
        try:
            read_credentials(credentials)
        except CredentialsError as err:
            _fail(f"{err.message} [{err.code}]")
        os.environ["EBSHED_DEVICE_CREDENTIALS"] = str(credentials)  # read by the device runner
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_sim_shed(settings, speed, seed))


@app.command("qr-sheet")
def qr_sheet(
    config: Annotated[
        Path,
        typer.Option(envvar="EBSHED_CONFIG", help="Shed config (TOML): id, name, sockets, tariff."),
    ] = Path("shed.toml"),
    base_url: Annotated[
        str | None,
        typer.Option(envvar="EBSHED_PUBLIC_URL",
                     help="Where phones reach the resident pages, e.g. https://charge.example.com "
                          "(default: the config's [central] public_url)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="The PDF to write.")] = Path("stickers.pdf"),
    shed: Annotated[str | None, typer.Option(help="Shed id, checked against the config's.")] = None,
    font: Annotated[Path | None, typer.Option(help="A TrueType CJK font to embed.")] = None,
    allow_loopback: Annotated[
        bool,
        typer.Option("--allow-loopback",
                     help="Accept a 127.0.0.1/localhost base URL (stickers only this computer "
                          "can open, for trying it out)."),
    ] = False,
) -> None:
    """The QR sticker sheet of a shed (A4 PDF): one sticker per socket, one for the entrance,
    with the price the shed bills (the central API's tariff it was sent, else its config's)."""
    from controller.core.tariffs import describe
    from controller.qrsheet import QrSheetError, write_qr_sheet
    from controller.shed_tariff import billed_tariff, stored_tariff

    settings = _load(config)
    if shed is not None and shed != settings.shed.id:
        _fail(f"{config} is the config of shed {settings.shed.id!r}, not {shed!r}")
    if base_url is None and settings.central is not None:
        base_url = settings.central.public_url
    if base_url is None:
        _fail("no public base URL: pass --base-url https://charge.example.com (where phones "
              f"reach the resident pages) or set public_url in the [central] section of {config}")
    ports = sorted({port for board in settings.boards for port in board.ports})
    price = describe(billed_tariff(settings, stored_tariff(settings.db_path)))["summary_zh"]
    try:
        sheet = write_qr_sheet(settings.shed.id, settings.shed.name or settings.shed.id,
                               ports, price, str(base_url), out, font_path=font,
                               allow_loopback=allow_loopback)
    except QrSheetError as err:
        _fail(f"{err.message} [{err.code}]")
    if not sheet.font_embedded:
        typer.echo("warning: no CJK TrueType font to embed (apt-get install fonts-wqy-microhei)",
                   err=True)
    typer.echo(f"{sheet.path}: {len(sheet.stickers)} stickers on {sheet.pages} page(s)")


def _post(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    import httpx

    try:
        resp = httpx.post(url, json=body, timeout=10)
    except httpx.HTTPError as err:
        _fail(f"controller not reachable at {url}: {err}", 3)
    data = resp.json()
    if resp.status_code >= 400:
        detail = data.get("detail", data)
        if isinstance(detail, dict):
            _fail(f"{detail.get('message')} [{detail.get('code')}]", 1)
        _fail(str(detail), 1)
    return dict(data)


def _check_shed(controller: str, shed: str) -> None:
    import httpx

    try:
        status = httpx.get(f"{controller}/status", timeout=10).json()
    except httpx.HTTPError as err:
        _fail(f"controller not reachable at {controller}: {err}", 3)
    if status.get("shed") != shed:
        _fail(f"the controller at {controller} runs shed {status.get('shed')!r}, not {shed!r}")


@port_app.command("start")
def port_start(
    shed: Annotated[str, typer.Argument(help="Shed id.")],
    port: Annotated[int, typer.Argument(help="Socket number as printed on it.")],
    amount_fen: Annotated[int | None, typer.Option(help="Prepaid fixed amount, fen.")] = None,
    deposit_fen: Annotated[int, typer.Option(help="Deposit for 'until full', fen.")] = 500,
    card: Annotated[str | None, typer.Option(help="Start on behalf of this IC card uid.")] = None,
    controller: Annotated[str, typer.Option(help="Controller's local API.")] = DEFAULT_CONTROLLER,
) -> None:
    """Start a session on a socket (a prepaid local order, or a card)."""
    _check_shed(controller, shed)
    body: dict[str, Any]
    if card:
        body = {"kind": "card", "ref": card.upper(), "prepaid_fen": amount_fen or deposit_fen}
    elif amount_fen is not None:
        body = {"kind": "order", "prepaid_fen": amount_fen, "mode": "amount"}
    else:
        body = {"kind": "order", "prepaid_fen": deposit_fen, "mode": "until_full"}
    typer.echo(json.dumps(_post(f"{controller}/ports/{port}/start", body), ensure_ascii=False))


@port_app.command("stop")
def port_stop(
    shed: Annotated[str, typer.Argument(help="Shed id.")],
    port: Annotated[int, typer.Argument(help="Socket number.")],
    controller: Annotated[str, typer.Option(help="Controller's local API.")] = DEFAULT_CONTROLLER,
) -> None:
    """Stop the session running on a socket."""
    _check_shed(controller, shed)
    typer.echo(json.dumps(_post(f"{controller}/ports/{port}/stop", {"reason": "operator"})))


@app.command("report")
def report(
    compound: Annotated[str, typer.Option(help="Compound id.")],
    month: Annotated[str, typer.Option(help="Local (China) month, YYYY-MM.")],
    fmt: Annotated[str, typer.Option("--format", help="csv, xlsx or json.")] = "csv",
    out: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
    table: Annotated[
        str | None, typer.Option(help="With csv: only this table (summary, days, sheds, ...).")
    ] = None,
    lang: Annotated[str, typer.Option(help="zh or en: headers and labels.")] = "zh",
    rebuild: Annotated[
        bool, typer.Option(help="First refill the compound's rollups from its raw records.")
    ] = False,
    database_url: ApiDatabaseUrl = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="The data dir of a demo run with --data-dir (its central.sqlite)."),
    ] = None,
) -> None:
    """The monthly community office report of a compound (docs/reports.md)."""
    from api.reports.cli import ReportFailed, demo_database_url, monthly_report
    from api.settings import DEFAULT_DATABASE_URL

    if data_dir is not None and database_url is not None:
        _fail("give --data-dir or --database-url, not both")
    if data_dir is not None:
        database_url = demo_database_url(data_dir)
    try:
        data = monthly_report(database_url or DEFAULT_DATABASE_URL, compound, month, fmt,
                              "en" if lang == "en" else "zh", table, rebuild_first=rebuild,
                              log=lambda line: typer.echo(line, err=True))
    except ReportFailed as err:
        _fail(err.message, err.exit_code)
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        out.write_bytes(data)
        typer.echo(f"{out}: {len(data)} bytes", err=True)


@user_app.command("add")
def user_add(
    login: Annotated[str, typer.Argument(help="The login name (a-z 0-9 . _ -).")],
    role: Annotated[str, typer.Option(help="staff, office or admin.")] = "admin",
    compound: Annotated[
        list[str] | None,
        typer.Option(help="A compound the role holds in (repeat it); none: every compound."),
    ] = None,
    name: Annotated[str, typer.Option(help="The name shown on the board.")] = "",
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input (scripts).")
    ] = False,
    database_url: ApiDatabaseUrl = None,
) -> None:
    """Add a user with a password, e.g. the first admin: `ebshed user add admin`."""
    import time

    from api.services.user_cli import UserAddFailed, add_user
    from api.settings import DEFAULT_DATABASE_URL

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user_id = add_user(database_url or DEFAULT_DATABASE_URL, login=login, name=name,
                           password=password, role=role, compounds=compound or [],
                           now_ms=time.time_ns() // 1_000_000)  # fmt: skip
    except UserAddFailed as err:
        _fail(f"{err.message} [{err.code}]")
    where = ", ".join(compound) if compound else "every compound"
    typer.echo(f"user {login} (id {user_id}): {role} in {where}")


@deploy_app.command("broker")
def deploy_broker_files(
    config: Annotated[
        list[Path],
        typer.Option(help="Shed config (TOML); repeat it for a broker of several sheds."),
    ],
    out: Annotated[Path, typer.Option(help="Folder for passwd, ebshed.acl, ebshed.conf, ...")],
    broker_dir: Annotated[
        Path | None,
        typer.Option(help="Where the files will live on the broker (default: --out)."),
    ] = None,
    plain_port: Annotated[
        int, typer.Option(help="Plain listener on 127.0.0.1 for the controller; 0: none.")
    ] = 1883,
    tls_port: Annotated[int, typer.Option(help="TLS listener for the devices; 0: none.")] = 8883,
    tls_bind: Annotated[
        str | None, typer.Option(help="Address of the TLS listener (default: every interface).")
    ] = None,
    certs: Annotated[
        Path | None,
        typer.Option(help="ca.crt, server.crt, server.key on the broker (default: its certs/)."),
    ] = None,
    require_certificate: Annotated[
        bool, typer.Option(help="TLS clients must also show a certificate of the CA.")
    ] = False,
    rotate: Annotated[
        list[str] | None,
        typer.Option(help="Give this login a new password (repeat it), e.g. demo-1.board.b1."),
    ] = None,
) -> None:
    """Mosquitto password file, ACL and listeners: one login per board, sensor and controller."""
    from controller.deploy_broker import BrokerOptions, DeployError, deploy_broker

    configs = [_load(path) for path in config]
    options = BrokerOptions(
        broker_dir=(broker_dir or out).absolute(),
        plain_port=plain_port,
        tls_port=tls_port,
        tls_bind=tls_bind,
        certs_dir=certs.absolute() if certs is not None else None,
        require_certificate=require_certificate,
    )
    try:
        result = deploy_broker(configs, out, options, rotate=rotate or [])
    except DeployError as err:
        _fail(f"{err.message} [{err.code}]")
    for path in result.files:
        typer.echo(str(path))
    typer.echo(
        f"{result.logins} logins: {len(result.created)} new passwords, "
        f"{len(result.kept)} kept, {len(result.dropped)} dropped"
        + (f" ({', '.join(result.dropped)})" if result.dropped else "")
    )


@bench_app.command("telemetry")
def bench_telemetry(
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here.")] = None,
    samples: Annotated[int, typer.Option(help="Samples per run.")] = 40_000,
    broker: Annotated[str, typer.Option(help="Mosquitto host:port.")] = "127.0.0.1:1883",
) -> None:
    """Samples/s through the whole controller vs a bare paho subscriber, same broker."""
    from bench.telemetry import run

    _emit(run(samples=samples, broker=broker), json_out)


@bench_app.command("footprint")
def bench_footprint(
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here.")] = None,
    sockets: Annotated[int, typer.Option(help="Sockets of the simulated shed.")] = 200,
    minutes: Annotated[float, typer.Option(help="Real minutes to run.")] = 10.0,
    broker: Annotated[str, typer.Option(help="Mosquitto host:port.")] = "127.0.0.1:1883",
    telemetry: Annotated[
        str | None, typer.Option(help="Export telemetry to this store URL (InfluxDB v2 API).")
    ] = None,
) -> None:
    """Resident memory and CPU of a controller for a 200-socket shed at 1 sample/s/socket."""
    from bench.footprint import run

    export: dict[str, Any] = {"telemetry_url": telemetry} if telemetry else {}
    _emit(run(sockets=sockets, minutes=minutes, broker=broker, **export), json_out)


@bench_app.command("reports")
def bench_reports(
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here.")] = None,
    compounds: Annotated[int, typer.Option(help="Compounds in the generated data.")] = 20,
    sheds: Annotated[int, typer.Option(help="Sheds per compound.")] = 10,
    sockets: Annotated[int, typer.Option(help="Sockets per shed.")] = 33,
    days: Annotated[int, typer.Option(help="Days of sessions (from 2025-12-01).")] = 365,
    backend: Annotated[str, typer.Option(help="postgresql or sqlite.")] = "postgresql",
    postgres: Annotated[
        str, typer.Option(help="PostgreSQL server: a throwaway database is made on it.")
    ] = "postgresql://postgres@127.0.0.1:5432/test",
    repeat: Annotated[int, typer.Option(help="Runs of each report; the best counts.")] = 5,
) -> None:
    """A compound's month and the district's year from the rollups vs the raw sessions."""
    from bench.reports import run

    _emit(run(compounds=compounds, sheds=sheds, sockets=sockets, days=days, backend=backend,
              postgres=postgres, repeat=repeat), json_out)


@bench_app.command("ingest")
def bench_ingest(
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here.")] = None,
    records: Annotated[int, typer.Option(help="Records posted in all (about).")] = 60_000,
    sheds: Annotated[int, typer.Option(help="Sheds posting at once.")] = 20,
    batch: Annotated[int, typer.Option(help="Records per uplink call (at most 500).")] = 500,
    workers: Annotated[int, typer.Option(help="uvicorn workers of the central API.")] = 2,
    clients: Annotated[int, typer.Option(help="Connections posting at once.")] = 4,
    postgres: Annotated[
        str, typer.Option(help="PostgreSQL server: a throwaway database is made on it.")
    ] = "postgresql://postgres@127.0.0.1:5432/test",
) -> None:
    """Session records/s through the uplink API vs a bare batched insert (10 % duplicates)."""
    from bench.ingest import run

    _emit(run(records=records, sheds=sheds, batch=batch, workers=workers, clients=clients,
              postgres=postgres), json_out)


@bench_app.command("pay-start")
def bench_pay_start(
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here.")] = None,
    orders: Annotated[int, typer.Option(help="Orders paid (one per socket).")] = 20,
    sockets: Annotated[int, typer.Option(help="Sockets of the shed.")] = 24,
    broker: Annotated[str, typer.Option(help="Mosquitto host:port.")] = "127.0.0.1:1883",
    workers: Annotated[int, typer.Option(help="uvicorn workers of the central API.")] = 1,
    database_url: Annotated[
        str | None, typer.Option(help="The API's database (default: SQLite in a temp folder).")
    ] = None,
) -> None:
    """From the payment notification to the socket's relay switching on (target < 1 s)."""
    from bench.pay_start import run

    _emit(run(orders=orders, sockets=sockets, broker=broker, workers=workers,
              database_url=database_url), json_out)


@bench_app.command("district")
def bench_district(
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here.")] = None,
    sheds: Annotated[
        str, typer.Option(help="Sheds served at once; a list (100,250,500) runs each in turn.")
    ] = "500",
    seconds: Annotated[float, typer.Option(help="Seconds each shed count runs.")] = 60.0,
    workers: Annotated[int, typer.Option(help="uvicorn workers of the central API.")] = 2,
    clients: Annotated[int, typer.Option(help="Processes the simulated sheds run in.")] = 2,
    commands_per_s: Annotated[
        float, typer.Option(help="Staff commands a second, to random sheds.")
    ] = 2.0,
    postgres: Annotated[
        str, typer.Option(help="PostgreSQL server: a throwaway database is made on it.")
    ] = "postgresql://postgres@127.0.0.1:5432/test",
) -> None:
    """One central API serving N simulated sheds: command delivery, slowest request, CPU, RSS."""
    from bench.district import run

    try:
        counts = tuple(int(n) for n in sheds.split(","))
    except ValueError:
        _fail("--sheds must be shed counts separated by commas, e.g. 100,250,500")
    try:
        result = run(sheds=counts, seconds=seconds, workers=workers, clients=clients,
                     commands_per_s=commands_per_s, postgres=postgres)
    except ValueError as err:
        _fail(str(err))
    _emit(result, json_out)


@bench_app.command("modbus-poll")
def bench_modbus_poll(
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here.")] = None,
    cycles: Annotated[int, typer.Option(help="Poll cycles measured per configuration.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed of the simulated boards.")] = 7,
    burners: Annotated[
        int | None,
        typer.Option(help="CPU burner processes of the loaded run (default: one per core; "
                          "0: quiet only)."),
    ] = None,
    loop_busy_ms: Annotated[
        float, typer.Option(help="Also keep the event loop busy in CPU slices this long.")
    ] = 0.0,
    realtime_priority: Annotated[
        int, typer.Option(help="SCHED_FIFO priority of the bus thread and the simulated bus "
                               "(0: normal scheduling).")
    ] = 10,
) -> None:
    """RS-485 poll-cycle time for 1, 4 and 16 boards at 9600 and 115200 baud vs wire time,
    quiet and with the box loaded by CPU burners, side by side."""
    from bench.modbus_poll import run

    _emit(run(cycles=cycles, seed=seed, burners=burners, loop_busy_ms=loop_busy_ms,
              realtime_priority=realtime_priority), json_out)


def _emit(result: dict[str, Any], json_out: Path | None) -> None:
    typer.echo(json.dumps(result, indent=2))
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2), "utf-8")


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `ebshed ... | head`
        sys.exit(0)
