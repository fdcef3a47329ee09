"""`chuchuang seed-demo`: a supplier with products, a promoter with a window, and a buyer —
enough to watch one order run end to end. Safe to run again: it finds what it made before."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import hash_password
from db.models import Product, Promoter, Sku, Supplier, User, Window, WindowProduct

DEMO_SUPPLIER_PASSWORD = "demo-supplier-pass"
# staff logins for the operations console (/console), printed by `chuchuang seed-demo`
DEMO_STAFF = {"demo-support": ("support", "demo-support-pass", "客服小李"),
              "demo-operator": ("operator", "demo-operator-pass", "运营小张")}


@dataclass
class Demo:
    supplier_user_id: int
    supplier_id: int
    promoter_user_id: int
    promoter_id: int
    window_id: int
    buyer_user_id: int
    buyer_openid: str
    product_id: int
    sku_ids: list[int]


def _user(s: Session, **fields) -> User:
    key = {k: fields[k] for k in ("openid", "username") if fields.get(k)}
    user = s.scalar(select(User).filter_by(**key))
    if user is None:
        user = User(**fields)
        s.add(user)
        s.flush()
    return user


def seed_demo(s: Session) -> Demo:
    supplier_user = _user(s, role="supplier", username="demo-supplier",
                          password_hash=hash_password(DEMO_SUPPLIER_PASSWORD), display_name="云南山货")
    supplier = s.scalar(select(Supplier).where(Supplier.owner_user_id == supplier_user.id))
    if supplier is None:
        supplier = Supplier(owner_user_id=supplier_user.id, name="云南山货供应链", service_fee_bps=300)
        s.add(supplier)
        s.flush()
    product = s.scalar(select(Product).where(Product.supplier_id == supplier.id))
    if product is None:
        product = Product(supplier_id=supplier.id, title="云南古树普洱茶", category="food")
        s.add(product)
        s.flush()
        s.add_all([
            Sku(product_id=product.id, spec="357g 饼", price_fen=19_900, stock=100, commission_bps=1_500),
            Sku(product_id=product.id, spec="100g 罐", price_fen=6_800, stock=100, commission_fixed_fen=800),
        ])
        s.flush()
    promoter_user = _user(s, role="promoter", openid="oDEMOpromoter000000000000001", display_name="小橱")
    promoter = s.scalar(select(Promoter).where(Promoter.user_id == promoter_user.id))
    if promoter is None:
        promoter = Promoter(user_id=promoter_user.id, nickname="小橱带货")
        s.add(promoter)
        s.flush()
    window = s.scalar(select(Window).where(Window.promoter_id == promoter.id))
    if window is None:
        window = Window(promoter_id=promoter.id, name="小橱的橱窗", channels_finder_id="sph_demo")
        s.add(window)
        s.flush()
    if s.get(WindowProduct, (window.id, product.id)) is None:
        s.add(WindowProduct(window_id=window.id, product_id=product.id))
    buyer = _user(s, role="buyer", openid="oDEMObuyer0000000000000000001", display_name="买家小王")
    s.flush()
    sku_ids = list(s.scalars(select(Sku.id).where(Sku.product_id == product.id).order_by(Sku.id)))
    return Demo(supplier_user.id, supplier.id, promoter_user.id, promoter.id, window.id, buyer.id,
                buyer.openid, product.id, sku_ids)


def seed_staff(s: Session) -> dict[str, int]:
    """A support and an operator login for the console (username → user id). Run again, it finds them."""
    made = {}
    for username, (role, password, name) in DEMO_STAFF.items():
        made[username] = _user(s, role=role, username=username, display_name=name,
                               password_hash=hash_password(password)).id
    return made
