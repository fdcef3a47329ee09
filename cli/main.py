"""The `chuchuang` command line."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal

import typer
from rich.console import Console
from rich.panel import Panel

from settings import get_settings

app = typer.Typer(help="Chuchuang 橱窗: durable back-end for WeChat social commerce.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
user_app = typer.Typer(help="Staff and supplier accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
console = Console()


@app.callback()
def _main(ctx: typer.Context) -> None:
    """SIGTERM (`timeout`, `kill`) and SIGHUP (the terminal closed) end a command as Ctrl-C does,
    through its `finally` blocks and exit handlers: nothing it started is left behind (see
    db/embedded.py for the embedded PostgreSQL). `chuchuang dev` handles them itself."""
    import threading

    if ctx.invoked_subcommand != "dev" and threading.current_thread() is threading.main_thread():
        _exit_on(signal.SIGTERM, signal.SIGHUP)


def _exit_on(*signals: signal.Signals) -> None:
    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in signals:
        signal.signal(sig, leave)


def _quick_exit(signum: int, frame: object) -> None:
    """Leave at once, stopping first an embedded PostgreSQL this process started."""
    from db.embedded import release_owned

    release_owned()
    os._exit(128 + signum)


def _until_stopped(coro) -> int:
    """Run a command's coroutine; Ctrl-C ends it with 130 (its waiting display says what carries on)."""
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        return 130


def _logging() -> None:
    import logging

    import structlog

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


@app.command()
def dev() -> None:
    """Everything on embedded defaults: PostgreSQL, Temporal + UI, sandbox, worker, API."""
    import atexit
    import sys

    from cli.devstack import run_dev

    rc = run_dev(get_settings())
    # everything is stopped: leave without waiting ~2 s for the Temporal client runtime to wind down
    atexit._run_exitfuncs()
    sys.stdout.flush()
    os._exit(rc)


@app.command()
def worker() -> None:
    """Run the Temporal worker (every workflow and activity)."""
    from worker import run_worker

    _logging()
    signal.signal(signal.SIGTERM, _quick_exit)  # a worker may stop anywhere: Temporal retries its tasks
    asyncio.run(run_worker(get_settings()))


@app.command()
def api() -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    from api.app import create_app

    settings = get_settings()
    _logging()
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")


@app.command()
def sandbox() -> None:
    """Serve the local emulator of WeChat Pay, WeChat OAuth and the logistics service."""
    import uvicorn

    from sandbox.app import create_app
    from sandbox.credentials import load_or_create

    settings = get_settings()
    if settings.app_env == "production":
        raise SystemExit("APP_ENV=production: the sandbox (an emulator that pays any order) never runs in production")
    creds = load_or_create(settings.sandbox_dir)
    console.print(Panel.fit(
        f"address      {settings.resolved_sandbox_url}\n"
        f"mchid        {creds.mchid}\nappid        {creds.appid}\n"
        f"merchant key {settings.sandbox_dir / 'merchant_private_key.pem'} "
        f"(serial {creds.merchant_cert_serial_no})\n"
        f"platform key {settings.sandbox_dir / 'platform_public_key.pem'} (id {creds.platform_public_key_id})\n"
        f"APIv3 key    {creds.apiv3_key}\n"
        f"all of it    {settings.sandbox_dir / 'credentials.json'}",
        title="WeChat Pay sandbox"))
    _logging()
    uvicorn.run(create_app(creds, state_path=settings.sandbox_dir / "state.sqlite3",
                           notify_retry_scale=settings.sandbox_notify_retry_scale,
                           settle_delay=settings.sandbox_settle_delay),
                host=settings.sandbox_host, port=settings.sandbox_port, log_level="info")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply Alembic migrations."""
    from db.migrate import upgrade
    from db.session import database_url

    upgrade(database_url(get_settings()), revision)
    console.print(f"database at [bold]{revision}[/bold]")


@user_app.command("create")
def user_create(username: str = typer.Option(...), role: str = typer.Option(..., help="support, operator, supplier or outlet_staff"),
                password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True),
                display_name: str = "") -> None:
    """Create a staff or supplier account that logs in with a password at POST /auth/token."""
    from sqlalchemy import select

    from api.auth import STAFF_ROLES, hash_password
    from db.models import User
    from db.session import transaction

    if role not in STAFF_ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(STAFF_ROLES)}", param_hint="--role")
    with transaction() as s:
        if s.scalar(select(User).where(User.username == username)):
            raise typer.BadParameter(f"user {username!r} exists", param_hint="--username")
        s.add(User(role=role, username=username, password_hash=hash_password(password),
                   display_name=display_name or username))
    console.print(f"created {role} [bold]{username}[/bold]; log in with POST /auth/token")


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Check every transaction balances, every hash chain is intact and every balance matches
    its entries. Exits 1 if anything is wrong."""
    from activities.ledger import verify
    from db.session import session_factory

    with session_factory(get_settings())() as s:
        problems = verify(s)
    if problems:
        for problem in problems:
            console.print(f"[red]✗[/red] {problem}", markup=True, highlight=False)
        console.print(f"[bold red]{len(problems)} problem(s)[/bold red]")
        raise typer.Exit(1)
    console.print("[green]ledger intact[/green]: balanced, hash chains verified, balances match entries")


@app.command("seed-demo")
def seed_demo() -> None:
    """Create demo data and print tokens and curl commands to run one order end to end."""
    from api.auth import issue_token
    from db.session import transaction
    from cli.seed import DEMO_STAFF, DEMO_SUPPLIER_PASSWORD, seed_staff
    from cli.seed import seed_demo as make

    settings = get_settings()
    with transaction() as s:
        demo = make(s)
        buyer = issue_token(settings, s, demo.buyer_user_id, "buyer")
        supplier = issue_token(settings, s, demo.supplier_user_id, "supplier")
        promoter = issue_token(settings, s, demo.promoter_user_id, "promoter")
        seed_staff(s)
    api_url, sandbox_url = settings.resolved_public_base_url, settings.resolved_sandbox_url
    body = ('{"window_id": %d, "lines": [{"sku_id": %d, "quantity": 2}], "address": {"receiver": "王小明", '
            '"phone": "13800138000", "province": "上海", "city": "上海", "district": "浦东新区", '
            '"detail": "世纪大道 100 号"}}' % (demo.window_id, demo.sku_ids[0]))
    steps = [
        ("Buyer, promoter and supplier tokens", f"export BUYER={buyer}\nexport PROMOTER={promoter}\nexport SUPPLIER={supplier}"),
        ("Place an order from the promoter's window (prints order_no and wx.requestPayment params)",
         f"curl -s -X POST {api_url}/orders -H \"Authorization: Bearer $BUYER\" -H 'Content-Type: application/json' -d {shlex.quote(body)}"),
        ("Pay it in the sandbox (sends a signed, encrypted notification to our webhook)",
         f"export NO=<order_no>\ncurl -s -X POST {sandbox_url}/sandbox/pay/$NO"),
        ("Supplier ships", f"curl -s -X POST {api_url}/orders/$NO/shipments -H \"Authorization: Bearer $SUPPLIER\" "
                           "-H 'Content-Type: application/json' -d '{\"carrier\": \"shunfeng\", \"waybill_no\": \"SF1234567890\"}'"),
        ("The carrier delivers (logistics push to our webhook)",
         f"curl -s -X POST {sandbox_url}/sandbox/logistics/advance -H 'Content-Type: application/json' "
         "-d '{\"company\": \"shunfeng\", \"number\": \"SF1234567890\", \"state\": \"3\"}'"),
        ("Buyer confirms receipt", f"curl -s -X POST {api_url}/orders/$NO/confirm-receipt -H \"Authorization: Bearer $BUYER\""),
        ("Watch the order and the promoter's wallet (the refund window is REFUND_WINDOW, 7 days by default; "
         "run `make dev` with REFUND_WINDOW=30 to see it complete in 30 s)",
         f"curl -s {api_url}/orders/$NO -H \"Authorization: Bearer $BUYER\"\ncurl -s {api_url}/wallet -H \"Authorization: Bearer $PROMOTER\""),
        ("Or log in as a buyer the WeChat way",
         f"CODE=$(curl -s -X POST {sandbox_url}/sandbox/oauth/code -H 'Content-Type: application/json' "
         f"-d '{{\"openid\": \"{demo.buyer_openid}\"}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"code\"])')\n"
         f"curl -s -X POST {api_url}/auth/wechat -H 'Content-Type: application/json' -d \"{{\\\"code\\\": \\\"$CODE\\\"}}\""),
    ]
    console.print(Panel.fit(
        f"supplier #{demo.supplier_id} (login demo-supplier / {DEMO_SUPPLIER_PASSWORD}), product #{demo.product_id} "
        f"SKUs {demo.sku_ids}\npromoter #{demo.promoter_id} with window #{demo.window_id}; buyer user #{demo.buyer_user_id}\n"
        f"Temporal UI: http://127.0.0.1:{settings.temporal_ui_port} (filter: OrderNo = \"...\" or "
        f"PromoterId = \"{demo.promoter_id}\")\n"
        f"Console 运营后台: {api_url}/console — "
        + ", ".join(f"{role} {name} / {password}" for name, (role, password, _) in DEMO_STAFF.items())
        + f", supplier demo-supplier / {DEMO_SUPPLIER_PASSWORD}",
        title="Demo data ready"))
    for n, (title, command) in enumerate(steps, 1):
        console.print(f"\n[bold]{n}. {title}[/bold]")
        console.print(command, markup=False, highlight=False, soft_wrap=True)


@app.command()
def rollups(since: str = typer.Option(..., help="first day YYYY-MM-DD (settlement time zone)"),
            until: str = typer.Option("", help="last day YYYY-MM-DD; default today")) -> None:
    """Recompute the dashboards' rollups for a range of days (backfill; the `dashboard-rollups`
    Schedule keeps the recent periods current on its own)."""
    from datetime import UTC, date, datetime

    from activities.rollups import local_day, rebuild
    from db.session import session_factory

    settings = get_settings()
    last = date.fromisoformat(until) if until else local_day(datetime.now(UTC), settings.settlement_timezone)
    done = rebuild(session_factory(settings), settings.settlement_timezone, date.fromisoformat(since), last)
    console.print(f"[green]rollups rebuilt[/green]: {done.periods} periods, {done.rows} rows")


@app.command()
def settle(kind: str = typer.Option(..., help="supplier (a day) or commission (a month)"),
           period: str = typer.Option(..., help="YYYY-MM-DD for supplier, YYYY-MM for commission"),
           follow: bool = typer.Option(True, help="follow the run with a live progress bar")) -> None:
    """Start a settlement run for a period (or find the one already started) and follow it."""
    from cli.settle import settle as run

    raise typer.Exit(_until_stopped(run(get_settings(), console, kind, period, follow)))


@app.command()
def report(period: str = typer.Option(..., help="a day YYYY-MM-DD or a month YYYY-MM")) -> None:
    """A period's settlement figures from the database: sales, refunds, fees, commission,
    split through WeChat Pay and outstanding (bank transfer)."""
    from cli.settle import report as show

    raise typer.Exit(show(get_settings(), console, period))



@app.command()
def reconcile(date: str = typer.Option(..., "--date", help="the bill day YYYY-MM-DD (Asia/Shanghai)"),
              follow: bool = typer.Option(True, help="follow the run and print its report"),
              rerun: bool = typer.Option(False, help="reconcile the day again as a new attempt (earlier reports kept)")) -> None:
    """Reconcile a day with WeChat Pay's trade bill (or find the run already started) and print
    the report: totals of the bill and the ledger, then every difference. Exit 1 on differences."""
    from cli.reconcile import reconcile as run

    raise typer.Exit(_until_stopped(run(get_settings(), console, date, follow, rerun)))


if __name__ == "__main__":
    app()
