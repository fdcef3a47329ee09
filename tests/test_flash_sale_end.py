"""A flash sale's end (a module of its own: it skips a day of the test server's clock, which the
other flash-sale tests compare with the wall clock the API claims by)."""

from __future__ import annotations

from datetime import timedelta

from db.flash_models import FlashSale, FlashSaleClaim
from db.models import Order, Sku
from domain.flash_sales import workflow_id as flash_workflow_id
from domain.order_status import OrderStatus
from tests.helpers import (
    assert_books_balance,
    keep_run_history,
    pay,
    run_to_end,
    wait_status,
)
from tests.test_flash_sale import (
    buy,
    buyers,
    end_sale,
    open_sale,
    stop_orders,
    wait_payable,
)


async def test_paid_units_stay_sold_unpaid_ones_return_and_the_rest_goes_back_at_the_end(
        api, sandbox, demo, token, sessions, temporal_env):
    with sessions() as s:
        stock_before = s.get(Sku, demo.sku_ids[0]).stock
    sale = await open_sale(api, demo, token, quantity=10, price_fen=9_900, lasts=timedelta(days=1))
    payer, idler = buyers(sessions, 2, "P")
    paid_no = (await buy(api, token, payer, sale["id"], demo, quantity=1)).json()["order_no"]
    idle_no = (await buy(api, token, idler, sale["id"], demo, quantity=1)).json()["order_no"]
    await wait_payable(temporal_env, paid_no)
    await wait_payable(temporal_env, idle_no)
    await pay(sandbox, paid_no)
    await wait_status(temporal_env.client, paid_no, OrderStatus.PAID)
    with sessions() as s:
        assert s.get(Order, paid_no).total_fen == 9_900  # the flash price
        assert_books_balance(s)

    # the unpaid order times out: its unit goes back to the sale, not to the SKU
    progress = await run_to_end(temporal_env, idle_no)
    assert progress.status == OrderStatus.CANCELLED
    with sessions() as s:
        assert s.get(FlashSale, sale["id"]).sold == 1
        assert s.get(FlashSaleClaim, idle_no).status == "released"
    await stop_orders(api, temporal_env, sessions)

    # the sale ends: the 9 units it did not sell return to the SKU
    assert await end_sale(temporal_env, sale["id"]) == 9
    await keep_run_history(temporal_env, flash_workflow_id(sale["id"]), None, "flash_sale_ended")
    with sessions() as s:
        assert s.get(FlashSale, sale["id"]).status == "ended"
        assert s.get(Sku, demo.sku_ids[0]).stock == stock_before - 1
        assert_books_balance(s)
