"""What the Channels tests share: ids in a block of their own, a listed product, a promoter with
a 视频号 window."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import text

from db.catalog_models import ProductDetail
from db.models import Product, Promoter, Sku, User, Window
from tests.catalog_helpers import active_supplier

_blocks = itertools.count(1)


@pytest.fixture
def world(request, sessions, clean_db):
    """Ids in a block of their own: the sandbox's shop outlives the truncated tables, and our
    out_product_id is `cc-product-{id}`."""
    block = 100_000 * next(_blocks) + 10_000 * (hash(request.module.__name__) % 7)
    with sessions.begin() as s:
        for seq in ("products_id_seq", "skus_id_seq", "windows_id_seq", "promoters_id_seq", "users_id_seq"):
            s.execute(text("SELECT setval(:seq, :v)"), {"seq": seq, "v": block})
    user_id, supplier_id = active_supplier(sessions, block % 10_000 + 1)
    return {"block": block, "supplier_id": supplier_id, "supplier_user_id": user_id}


def listed(sessions, supplier_id: int, title: str, stock: int = 10, price: int = 9_900) -> tuple[int, int]:
    with sessions.begin() as s:
        p = Product(supplier_id=supplier_id, title=title, category="food", status="listed")
        s.add(p)
        s.flush()
        sku = Sku(product_id=p.id, spec="500g", price_fen=price, stock=stock, commission_bps=1_000)
        s.add(sku)
        s.add(ProductDetail(product_id=p.id, description="", images=["https://img.example.com/tea.jpg"], materials=[]))
        s.flush()
        return p.id, sku.id


def promoter(sessions, name: str, finder: str) -> dict:
    with sessions.begin() as s:
        user = User(role="promoter", openid=f"o{finder}{'x' * 20}"[:28], display_name=name)
        s.add(user)
        s.flush()
        p = Promoter(user_id=user.id, nickname=name)
        s.add(p)
        s.flush()
        window = Window(promoter_id=p.id, name=f"{name}的橱窗", channels_finder_id=finder)
        s.add(window)
        s.flush()
        return {"user_id": user.id, "window_id": window.id, "finder": finder}
