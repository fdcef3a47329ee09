"""Channels shop and window sync (issue 4): window changes and listing changes go through the
transactional outbox to the Channels shop of the sandbox, queried here over its own API as the
real shop would be; sold-out, suspended and violating products leave every window there, and
the promoters are told."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from workflows.channels_sync import WORKFLOW_ID as SYNC_WORKFLOW_ID
from db.catalog_models import ChannelsListing, ProductDetail
from db.channels_models import ChannelsOutbox, ChannelsWindowItem
from db.models import Product, Promoter, Sku, User, Window, WindowProduct
from integrations.channels import ChannelsClient, ProductStatus
from integrations.errors import PartnerRejected
from workflows.channels_sync import ChannelsSyncWorkflow
from domain.catalog import ProductStatus as ReviewStatus
from workflows.product import ProductReviewWorkflow
from tests.catalog_helpers import active_supplier, notifications, wait_progress
from tests.catalog_helpers import product as product_body
from tests.helpers import ADDRESS, assert_books_balance, end_workflows, keep_run_history
from tests.promoter_helpers import eventually
from tests.channels_helpers import listed, promoter, world  # noqa: F401 - world is a fixture

@pytest.fixture
async def shop(settings, api):
    """Our Channels client against the sandbox (the API fixture has put the sandbox's route back)."""
    async with ChannelsClient.from_settings(settings) as client:
        yield client


def buyer(sessions, n: int) -> int:
    with sessions.begin() as s:
        user = User(role="buyer", openid=f"oCHBUYER{n:020d}", display_name="买家")
        s.add(user)
        s.flush()
        return user.id


def shop_id(sessions, product_id: int) -> str | None:
    with sessions() as s:
        listing = s.get(ChannelsListing, product_id)
        return listing.channels_product_id if listing else None


async def in_window(shop: ChannelsClient, product_shop_id: str, finder: str):
    try:
        return await shop.get_window_product(product_shop_id, finder_id=finder)
    except PartnerRejected as err:
        assert err.code == "10022003", err
        return None


async def wait_in_window(shop, sessions, product_id: int, finder: str, *, hidden: bool = False):
    async def check():
        sid = shop_id(sessions, product_id)
        item = sid and await in_window(shop, sid, finder)
        return item if item and item.is_hide_for_window == hidden else None

    return await eventually(check, timeout=30, what=f"product {product_id} in window {finder} (hidden={hidden})")


async def wait_not_in_window(shop, sessions, product_id: int, finder: str):
    async def check():
        sid = shop_id(sessions, product_id)
        return sid is not None and await in_window(shop, sid, finder) is None

    await eventually(check, timeout=30, what=f"product {product_id} off window {finder}")


async def window_ids(shop: ChannelsClient, finder: str) -> list[str]:
    ids, key = [], None
    while True:
        page = await shop.list_window_products(finder_id=finder, page_size=30, next_key=key)
        ids += page.ids
        if not page.has_more:
            return ids
        key = page.next_key


async def shop_products_with(shop: ChannelsClient, out_id: str) -> list[str]:
    found, key = [], None
    while True:
        page = await shop.list_products(page_size=30, next_key=key)
        for pid in page.ids:
            if (await shop.get_product(pid, draft=True)).out_product_id == out_id:
                found.append(pid)
        if not page.has_more or not page.ids:
            return found
        key = page.next_key


async def mount(api, token, p: dict, product_id: int) -> None:
    """The promoter `p` mounts the product into their window through the API."""
    r = await api.post("/windows/me/products", json={"product_id": product_id}, headers=token(p["user_id"], "promoter"))
    assert r.status_code == 201, r.text


async def wait_shop_status(shop, sessions, product_id: int, status, what: str) -> None:
    async def shop_status():
        return (await shop.get_product(shop_id(sessions, product_id))).status

    await eventually(lambda: _equals(shop_status, status), what=what)


async def test_mount_hide_remove_follow_in_the_promoters_channels_window(api, world, sessions, token, shop,
                                                                          monkeypatch):
    from activities import channels_outbox

    pid, _ = listed(sessions, world["supplier_id"], "凤庆滇红 一级")
    a = promoter(sessions, "阿橙", f"sph_a{world['block']}")
    headers = token(a["user_id"], "promoter")

    with monkeypatch.context() as m:  # as in an API process of its own: only the API's wake
        m.setattr(channels_outbox, "_waker", None)
        mounted = await api.post("/windows/me/products", json={"product_id": pid}, headers=headers)
        assert mounted.status_code == 201, mounted.text
        item = await wait_in_window(shop, sessions, pid, a["finder"])
    assert (item.title, item.min_price, item.status) == ("凤庆滇红 一级", 9_900, ProductStatus.ON_SALE)
    assert item.out_product_id == f"cc-product-{pid}"

    assert (await api.patch(f"/windows/me/products/{pid}", json={"hidden": True}, headers=headers)).status_code == 200
    await wait_in_window(shop, sessions, pid, a["finder"], hidden=True)
    assert (await api.patch(f"/windows/me/products/{pid}", json={"hidden": False}, headers=headers)).status_code == 200
    await wait_in_window(shop, sessions, pid, a["finder"], hidden=False)
    with sessions() as s:  # four changes of one window item: one outbox row, its version bumped
        rows = s.scalars(select(ChannelsOutbox).where(ChannelsOutbox.kind == "window")).all()
    assert [(r.key, r.version >= 3) for r in rows] == [(f"window:{a['window_id']}:{pid}", True)]

    assert (await api.delete(f"/windows/me/products/{pid}", headers=headers)).status_code == 204
    await wait_not_in_window(shop, sessions, pid, a["finder"])
    assert await window_ids(shop, a["finder"]) == []
    with sessions() as s:
        assert s.get(ChannelsWindowItem, (a["window_id"], pid)).state == "absent"


async def test_last_unit_sold_leaves_every_window_at_the_shop_and_promoters_are_told(
        api, world, sessions, token, shop, temporal_env):
    pid, sku = listed(sessions, world["supplier_id"], "勐海熟普 357g", stock=2)
    a = promoter(sessions, "阿橙", f"sph_a{world['block']}")
    b = promoter(sessions, "小柚", f"sph_b{world['block']}")
    for p in (a, b):
        await mount(api, token, p, pid)
    for p in (a, b):
        await wait_in_window(shop, sessions, pid, p["finder"])

    placed = await api.post("/orders", headers=token(buyer(sessions, world["block"]), "buyer"), json={
        "window_id": a["window_id"], "lines": [{"sku_id": sku, "quantity": 2}], "address": ADDRESS})
    assert placed.status_code == 201, placed.text
    for p in (a, b):  # the order activity sold the last units: off both Channels windows
        await wait_not_in_window(shop, sessions, pid, p["finder"])
    told = notifications(sessions, "window_product_off_sale")
    assert {n.recipient_user_id for n in told} == {a["user_id"], b["user_id"]}
    assert all("勐海熟普 357g" in n.message and "售罄" in n.message for n in told)
    async def shop_stock():
        return [k.stock_num for k in (await shop.get_product(shop_id(sessions, pid), draft=True)).skus]

    await eventually(lambda: _equals(shop_stock, [0]), what="the shop's stock follows ours")
    with sessions() as s:
        assert_books_balance(s)


async def test_supplier_suspension_delists_at_the_shop_and_reinstatement_relists(
        api, world, sessions, token, shop):
    pid, _ = listed(sessions, world["supplier_id"], "正山小种 250g")
    a = promoter(sessions, "阿橙", f"sph_a{world['block']}")
    await mount(api, token, a, pid)
    await wait_in_window(shop, sessions, pid, a["finder"])

    suspended = await api.post(f"/suppliers/{world['supplier_id']}/suspend", json={"reason": "销售假冒商品"},
                               headers=token(1, "operator"))
    assert suspended.status_code == 200, suspended.text
    await wait_not_in_window(shop, sessions, pid, a["finder"])

    await wait_shop_status(shop, sessions, pid, ProductStatus.DELISTED, "delisted at the shop")
    assert any("正山小种 250g" in n.message for n in notifications(sessions, "window_product_off_sale"))

    reinstated = await api.post(f"/suppliers/{world['supplier_id']}/reinstate", headers=token(2, "support"))
    assert reinstated.status_code == 200, reinstated.text
    await wait_shop_status(shop, sessions, pid, ProductStatus.ON_SALE, "relisted at the shop")
    await wait_in_window(shop, sessions, pid, a["finder"])
    assert await window_ids(shop, a["finder"]) == [shop_id(sessions, pid)]


async def test_product_suspension_delists_at_the_shop_and_survives_the_suppliers_reinstatement(
        api, world, sessions, token, shop):
    pid, _ = listed(sessions, world["supplier_id"], "金骏眉 100g")
    a = promoter(sessions, "阿金", f"sph_j{world['block']}")
    await mount(api, token, a, pid)
    await wait_in_window(shop, sessions, pid, a["finder"])

    suspended = await api.post(f"/products/{pid}/suspend", json={"reason": "标签与实物不符"},
                               headers=token(2, "support"))
    assert suspended.status_code == 200, suspended.text
    await wait_not_in_window(shop, sessions, pid, a["finder"])
    await wait_shop_status(shop, sessions, pid, ProductStatus.DELISTED, "delisted at the shop")

    # The supplier's own suspension and reinstatement in between do not bring it back.
    operator = token(1, "operator")
    assert (await api.post(f"/suppliers/{world['supplier_id']}/suspend", json={"reason": "资质过期"},
                           headers=operator)).status_code == 200
    assert (await api.post(f"/suppliers/{world['supplier_id']}/reinstate", headers=operator)).status_code == 200
    with sessions() as s:
        assert s.get(Product, pid).status == "product_suspended"

    assert (await api.post(f"/products/{pid}/reinstate", headers=operator)).status_code == 200
    await wait_shop_status(shop, sessions, pid, ProductStatus.ON_SALE, "relisted at the shop")
    await wait_in_window(shop, sessions, pid, a["finder"])


async def _equals(get, wanted) -> bool:
    return await get() == wanted


async def test_channels_faults_converge_to_one_window_entry_per_product_and_promoter(
        api, world, sessions, token, shop, sandbox):
    products = [listed(sessions, world["supplier_id"], f"白毫银针 {n}号")[0] for n in range(3)]
    promoters = [promoter(sessions, name, f"sph_{name}{world['block']}") for name in ("f1", "f2")]
    faults = await sandbox.put("/sandbox/faults", json={"seed": 7, "endpoints": [
        {"path": "/channels/ec/product/*", "error_rate": 1.0, "error_status": 500, "times": 2},
        # only the worker's call: the test's own window/product/get polls must not use up the fault
        {"path": "/channels/ec/window/product/add", "error_rate": 1.0, "error_status": 429, "times": 1}]})
    assert faults.status_code == 200, faults.text
    try:
        for p in promoters:
            for pid in products:
                await mount(api, token, p, pid)
            # mounting twice is one entry, here and at the shop
            again = await api.post("/windows/me/products", json={"product_id": products[0]},
                                   headers=token(p["user_id"], "promoter"))
            assert again.status_code == 201
        for p in promoters:
            for pid in products:
                await wait_in_window(shop, sessions, pid, p["finder"])
        stats = (await sandbox.get("/sandbox/faults")).json()["stats"]
        assert stats.get("error_500", 0) == 2 and stats.get("error_429", 0) == 1, stats
    finally:
        await sandbox.delete("/sandbox/faults")
    wanted = sorted(shop_id(sessions, pid) for pid in products)
    for p in promoters:
        assert sorted(await window_ids(shop, p["finder"])) == wanted
    for pid in products:
        assert await shop_products_with(shop, f"cc-product-{pid}") == [shop_id(sessions, pid)]
    with sessions() as s:
        assert s.scalar(text("SELECT count(*) FROM channels_outbox WHERE status <> 'done'")) == 0


async def test_a_lost_answer_to_the_product_add_never_lists_twice(api, world, sessions, token, shop, sandbox,
                                                                  temporal_env):
    """The shop adds the product but its answer never arrives (the client gives up): the retried
    approval finds it by out_product_id instead of adding a second one."""
    created = await api.post("/products", json=product_body(title="六堡茶 三年陈"),
                             headers=token(world["supplier_user_id"], "supplier"))
    assert created.status_code == 201, created.text
    pid = created.json()["product_id"]
    await wait_progress(temporal_env.client, created.json()["workflow_id"], ProductReviewWorkflow.progress,
                        ReviewStatus.PENDING_REVIEW)
    await sandbox.put("/sandbox/faults", json={"endpoints": [
        {"path": "/channels/ec/product/add", "timeout_seconds": 11.0, "times": 1}]})
    try:
        decided = await api.post(f"/products/{pid}/review", json={"action": "approve"}, headers=token(2, "support"))
        assert decided.status_code == 200, decided.text

        async def listed_at_shop():
            with sessions() as s:
                listing = s.get(ChannelsListing, pid)
                return listing is not None and listing.status == "LISTED"

        await eventually(listed_at_shop, timeout=60, what="listed after the retry")
        assert (await sandbox.get("/sandbox/faults")).json()["stats"].get("timeout") == 1
    finally:
        await sandbox.delete("/sandbox/faults")
    assert await shop_products_with(shop, f"cc-product-{pid}") == [shop_id(sessions, pid)]
    assert (await shop.get_product(shop_id(sessions, pid))).status == ProductStatus.ON_SALE

    a = promoter(sessions, "阿橙", f"sph_a{world['block']}")  # and it mounts like any other
    await mount(api, token, a, pid)
    await wait_in_window(shop, sessions, pid, a["finder"])
    assert await shop_products_with(shop, f"cc-product-{pid}") == [shop_id(sessions, pid)]


async def test_reconcile_pulls_window_stats_and_a_violation_leaves_every_window(
        api, world, sessions, token, shop, sandbox, settings, temporal_env):
    pid, _ = listed(sessions, world["supplier_id"], "安吉白茶 明前")
    a = promoter(sessions, "阿橙", f"sph_a{world['block']}")
    b = promoter(sessions, "小柚", f"sph_b{world['block']}")
    for p in (a, b):
        await mount(api, token, p, pid)
    for p in (a, b):
        await wait_in_window(shop, sessions, pid, p["finder"])
    sid = shop_id(sessions, pid)
    order = await sandbox.post("/sandbox/channels/orders", json={
        "openid": "oCHANNELSBUYER0000000000001", "product_id": sid, "count": 3, "promoter_appid": a["finder"]})
    assert order.status_code == 200, order.text
    assert (await sandbox.post(f"/sandbox/channels/orders/{order.json()['order_id']}/pay")).status_code == 200
    c = promoter(sessions, "小桃", f"sph_c{world['block']}")
    with sessions.begin() as s:  # an item that never reached the shop (written without an outbox row)
        s.add(WindowProduct(window_id=c["window_id"], product_id=pid))

    first = await temporal_env.client.execute_workflow(
        ChannelsSyncWorkflow.run, settings.channels_sync_input("reconcile"), id=f"channels-reconcile-{world['block']}",
        task_queue=settings.task_queue)
    assert first.reconciles == 1
    with sessions() as s:
        pulled = {i.window_id: (i.shop_sales, i.shop_stock, i.shop_status)
                  for i in s.scalars(select(ChannelsWindowItem))}
    assert pulled[a["window_id"]] == (3, 10, ProductStatus.ON_SALE)
    assert pulled[b["window_id"]] == (3, 10, ProductStatus.ON_SALE)
    stats = {r["product_id"]: r for r in (await api.get("/windows/me/stats", headers=token(a["user_id"], "promoter"))).json()}
    assert (stats[pid]["shop_sales"], stats[pid]["shop_stock"]) == (3, 10)
    await wait_in_window(shop, sessions, pid, c["finder"])  # the drift was queued again

    punished = await sandbox.post(f"/sandbox/channels/products/{sid}/punish")
    assert punished.json()["status"] == ProductStatus.PUNISHED
    run = await temporal_env.client.start_workflow(
        ChannelsSyncWorkflow.run, settings.channels_sync_input("reconcile"), id=f"channels-reconcile-{world['block']}-2",
        task_queue=settings.task_queue)
    await run.result()
    with sessions() as s:
        assert s.get(Product, pid).status == "violation"
        assert {(wp.status, wp.off_reason) for wp in s.scalars(select(WindowProduct))} == {("off_sale", "violation")}
    for p in (a, b, c):
        await wait_not_in_window(shop, sessions, pid, p["finder"])
    told = notifications(sessions, "window_product_off_sale")
    assert {n.recipient_user_id for n in told} == {a["user_id"], b["user_id"], c["user_id"]}
    assert all("安吉白茶 明前" in n.message for n in told)
    assert notifications(sessions, "product_off_shop", recipient_user_id=world["supplier_user_id"])
    public = (await api.get("/products", headers=token(a["user_id"], "promoter"))).json()
    assert pid not in [p["id"] for p in public]

    await keep_run_history(temporal_env, run.id, None, "channels_sync_reconcile")
    await keep_run_history(temporal_env, SYNC_WORKFLOW_ID, None, "channels_sync")


async def test_the_sync_continues_as_new_and_keeps_its_totals(api, world, sessions, temporal_env, settings):
    from temporalio.client import WorkflowExecutionStatus

    from domain.channels import ChannelsSyncInput

    wf_id = f"channels-sync-can-{world['block']}"
    handle = await temporal_env.client.start_workflow(
        ChannelsSyncWorkflow.run, ChannelsSyncInput(wakes_per_run=1), id=wf_id, task_queue=settings.task_queue)
    first_run = handle.result_run_id

    async def drained(n: int):
        progress = await temporal_env.client.get_workflow_handle(wf_id).query(ChannelsSyncWorkflow.progress)
        return progress if progress.drains >= n else None

    await eventually(lambda: drained(1), what="first drain")
    await handle.signal(ChannelsSyncWorkflow.wake)

    async def continued():
        described = await temporal_env.client.get_workflow_handle(wf_id, run_id=first_run).describe()
        return described.status == WorkflowExecutionStatus.CONTINUED_AS_NEW

    await eventually(continued, what="continue-as-new")
    progress = await eventually(lambda: drained(3), what="the new run's drain")
    assert progress.wakes == 1  # carried into the new run
    await end_workflows(temporal_env.client, [wf_id])
