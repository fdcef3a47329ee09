"""A supplier takes its own listed product off sale (下架) and puts it back (上架) (issue 19):
the product leaves every promoter's window and the Channels shop listing, nobody can order it,
and it comes back into the windows it left only when its supplier relists it."""

from __future__ import annotations

from sqlalchemy import select

from db.models import Product, WindowProduct
from db.channels_models import ChannelsOutbox
from tests.catalog_helpers import active_supplier
from tests.channels_helpers import listed, promoter, world  # noqa: F401 - world is a fixture


async def test_a_supplier_takes_its_product_off_sale_and_back(api, world, sessions, token):
    pid, sku_id = listed(sessions, world["supplier_id"], "勐海普洱 357g")
    seller = promoter(sessions, "小枣", f"sph_off{world['block']}")
    mounted = await api.post("/windows/me/products", json={"product_id": pid},
                             headers=token(seller["user_id"], "promoter"))
    assert mounted.status_code == 201, mounted.text
    supplier = token(world["supplier_user_id"], "supplier")
    other_user, _ = active_supplier(sessions, world["block"] % 10_000 + 2)

    assert (await api.post(f"/products/{pid}/off-sale", headers=token(other_user, "supplier"))).status_code == 404
    assert (await api.post(f"/products/{pid}/on-sale", headers=supplier)).json()["code"] == "NOT_WITHDRAWN"
    off = await api.post(f"/products/{pid}/off-sale", headers=supplier)
    assert off.status_code == 200, off.text
    assert off.json() == {"product_id": pid, "status": "withdrawn", "window_entries": 1}
    assert (await api.post(f"/products/{pid}/off-sale", headers=supplier)).json()["code"] == "NOT_ON_SALE"
    with sessions() as s:
        item = s.get(WindowProduct, (seller["window_id"], pid))
        assert (item.status, item.off_reason) == ("off_sale", "withdrawn")
        assert s.scalar(select(ChannelsOutbox.reason).where(ChannelsOutbox.key == f"product:{pid}")) \
            == "product_withdrawn"  # the shop listing follows
    shown = await api.get(f"/products/{pid}", headers=token(seller["user_id"], "promoter"))
    assert shown.status_code == 404  # not on sale: not shown outside its supplier and staff

    back = await api.post(f"/products/{pid}/on-sale", headers=supplier)
    assert back.json() == {"product_id": pid, "status": "listed", "window_entries": 1}, back.text
    with sessions() as s:
        assert s.get(Product, pid).status == "listed"
        assert s.get(WindowProduct, (seller["window_id"], pid)).status == "mounted"
