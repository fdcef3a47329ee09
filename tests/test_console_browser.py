"""The console in a real browser: Debian's Chromium driven by Playwright (nothing downloaded:
`apt-get install chromium`, never `playwright install`), the in-process stack served by uvicorn
on a loopback port. A support user signs in, approves a supplier, a product and a refund from
the queues and the workflows move on; an operator changes the commission policy and reads the
platform dashboard; a supplier sees its product analytics. Screenshots land in tests/artifacts/."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from activities.rollups import local_day, rebuild
from api.auth import hash_password
from db.models import Product, Supplier, User
from db.order_models import Refund
from domain.order_status import OrderStatus
from domain.refunds import RefundStatus
from tests.console_helpers import PASSWORD, fill_queues, staff_user
from tests.helpers import run_to_end, wait_refund

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--no-first-run",
        "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} is absent: apt-get install -y chromium (.ci/run does)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def served(api):
    """The test's API app on a real port. uvicorn runs as a task on the test's own event loop
    (not in a thread): the Temporal client and the in-process partner routes belong to this loop."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(api._transport.app, host="127.0.0.1", port=port, log_level="warning",
                                          lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():  # could not bind or start: say why
            task.result()
            raise RuntimeError(f"uvicorn stopped before serving on port {port}")
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        await chromium.close()


async def _sign_in(browser, base: str, username: str, password: str = PASSWORD):
    from playwright.async_api import expect

    context = await browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    page = await context.new_page()
    await page.goto(f"{base}/console/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("button[type=submit]")
    await expect(page.locator("header .who")).to_contain_text("#")
    return page


async def _decide(page, queue: str, key: str, button: str, reason: str) -> None:
    from playwright.async_api import expect

    row = page.locator(f'section#{queue} tr[data-key="{key}"]')
    await row.locator("input[name=reason]").fill(reason)
    await row.get_by_role("button", name=button, exact=True).click()
    await expect(row.locator(".decided")).to_have_attribute("data-outcome", "ok", timeout=20_000)


async def test_support_operator_and_supplier_in_the_browser(api, served, browser, sandbox, temporal_env, sessions,
                                                           token, demo, settings, monkeypatch):
    from playwright.async_api import expect

    monkeypatch.setattr(settings, "commission_tiers", 2)  # the ceiling the operator's new policy stays within

    waiting = await fill_queues(api, sandbox, temporal_env, sessions, token, demo)
    staff_user(sessions, "support", "kefu")
    staff_user(sessions, "operator", "yunying")
    with sessions.begin() as s:
        s.get(User, demo.supplier_user_id).password_hash = hash_password(PASSWORD)

    # --- support: the queues, three decisions ------------------------------------------------
    page = await _sign_in(browser, served, "kefu")
    await expect(page).to_have_url(f"{served}/console/queues")
    await expect(page.locator("#count-suppliers b")).to_have_text("1")
    await expect(page.locator("#count-products b")).to_have_text("1")
    await expect(page.locator("#count-refunds b")).to_have_text("1")
    link = page.locator(f'section#refunds tr[data-key="{waiting.refund_no}"] a', has_text="Temporal")
    assert "OrderNo%3D%22" + waiting.order_no in await link.get_attribute("href")
    await page.screenshot(path=ARTIFACTS / "queues.png", full_page=True)

    await _decide(page, "suppliers", str(waiting.supplier_id), "通过", "资质齐全")
    await _decide(page, "products", str(waiting.product_id), "通过", "图文合规")
    await _decide(page, "refunds", waiting.refund_no, "通过", "照片显示破损，同意退款")
    await page.screenshot(path=ARTIFACTS / "queues-decided.png", full_page=True)

    assert (await run_to_end(temporal_env, waiting.order_no)).status == OrderStatus.REFUNDED
    await wait_refund(temporal_env.client, waiting.refund_no, RefundStatus.REFUNDED)
    with sessions() as s:
        assert s.get(Supplier, waiting.supplier_id).status == "active"
        assert s.get(Product, waiting.product_id).status == "listed"
        assert s.get(Refund, waiting.refund_no).status == RefundStatus.REFUNDED
    await page.goto(f"{served}/console/audit")
    await expect(page.locator("#audit tbody tr")).to_have_count(3)
    await expect(page.locator("#audit")).to_contain_text("资质齐全")
    await page.screenshot(path=ARTIFACTS / "audit.png", full_page=True)
    await page.goto(f"{served}/console/orders/{waiting.order_no}")
    await expect(page.locator("#order-status")).to_have_text("已退款")
    await page.context.close()

    # --- operator: a new commission policy, then the platform dashboard ------------------------
    page = await _sign_in(browser, served, "yunying")
    await page.goto(f"{served}/console/policy")
    await page.fill("input[name=tiers]", "2")
    await page.fill("input[name=tier_rates]", "8000,2000")
    await page.fill("input[name=reason]", "双十二活动")
    await page.click("#policy-submit")
    await expect(page.locator("#policy-message")).to_contain_text("已生效")
    await expect(page.locator("#policy-version")).to_have_text("2")
    await page.screenshot(path=ARTIFACTS / "policy.png", full_page=True)
    with sessions() as s:
        assert s.execute(text("SELECT tiers, tier_rates_bps FROM commission_policies ORDER BY version DESC")).first() \
            == (2, [8000, 2000])

    # the demo supplier's sales and window views, rolled up as the Schedule does
    with sessions.begin() as s:
        window = demo.window_id
        s.execute(text("INSERT INTO window_product_stats (window_id, product_id, exposures, clicks) "
                       "VALUES (:w, :p, 240, 31)"), {"w": window, "p": demo.product_id})
    today = local_day(datetime.now(UTC), settings.settlement_timezone)
    rebuild(sessions, settings.settlement_timezone, today, today, snapshot_day=today)
    await page.goto(f"{served}/console/dashboard?grain=day&dim=category")
    await expect(page.locator("#kpi-gmv_fen .v")).not_to_have_text("¥0.00")
    await expect(page.locator("#chart-gmv canvas")).to_have_count(1)
    await expect(page.locator("#breakdown")).to_contain_text("food")
    await page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
    await page.context.close()

    # --- supplier: its own product analytics -----------------------------------------------------
    page = await _sign_in(browser, served, "demo-supplier")
    await expect(page).to_have_url(f"{served}/console/supplier")
    await expect(page.locator("#kpi-exposures .v")).to_have_text("240")
    await expect(page.locator("#breakdown")).to_contain_text("云南古树普洱茶")
    await expect(page.locator("#chart-supplier canvas")).to_have_count(1)
    await expect(page.locator("#best")).to_contain_text("云南古树普洱茶")
    await page.screenshot(path=ARTIFACTS / "supplier.png", full_page=True)
    forbidden = await page.goto(f"{served}/console/queues")
    assert forbidden.status == 403
    await page.context.close()
    if os.environ.get("CHUCHUANG_DOCS_SCREENSHOTS"):
        docs = Path(__file__).parents[1] / "docs"
        docs.mkdir(exist_ok=True)
        for name in ("queues.png", "supplier.png"):
            (docs / f"console-{name}").write_bytes((ARTIFACTS / name).read_bytes())


async def test_the_dashboard_shows_the_figures_of_a_generated_month(api, served, browser, sessions, settings):
    """The charts and cards a browser renders carry the figures computed from the raw rows."""
    import random
    from datetime import date, timedelta

    from playwright.async_api import expect

    from domain.dashboards import percent, yuan
    from tests.test_dashboards import FIRST, LAST, expected, generate

    views = generate(sessions, random.Random(7))["views"]
    rebuild(sessions, settings.settlement_timezone, FIRST - timedelta(days=1), LAST)
    want = expected(sessions, views)
    staff_user(sessions, "operator", "yunying")
    page = await _sign_in(browser, served, "yunying")
    await page.goto(f"{served}/console/dashboard?grain=day&dim=city&until=2026-11-30")
    day = want[("day", date(2026, 11, 30), "all", "")]
    await expect(page.locator("#kpi-gmv_fen .v")).to_have_text(yuan(day["gmv_fen"]))
    await expect(page.locator("#kpi-paid_orders .v")).to_have_text(f"{day['paid_orders']:,}")
    rate = day["repeat_buyers"] * 10_000 // day["paying_buyers"]
    await expect(page.locator("#kpi-repeat_rate_bps .v")).to_have_text(percent(rate))
    if rate < settings.repeat_purchase_alert_bps:
        await expect(page.locator("#alert-REPEAT_RATE_LOW")).to_be_visible()
    await expect(page.locator("#chart-gmv canvas")).to_have_count(1)
    await page.screenshot(path=ARTIFACTS / "dashboard-day.png", full_page=True)
    await page.goto(f"{served}/console/dashboard?grain=month&dim=supplier&until=2026-11-30")
    month = want[("month", date(2026, 11, 1), "all", "")]
    await expect(page.locator("#kpi-gmv_fen .v")).to_have_text(yuan(month["gmv_fen"]))
    await expect(page.locator("#breakdown tbody tr")).to_have_count(3)
    await page.screenshot(path=ARTIFACTS / "dashboard-month.png", full_page=True)
    await page.context.close()
    if os.environ.get("CHUCHUANG_DOCS_SCREENSHOTS"):
        docs = Path(__file__).parents[1] / "docs"
        docs.mkdir(exist_ok=True)
        (docs / "console-dashboard.png").write_bytes((ARTIFACTS / "dashboard-day.png").read_bytes())
