"""Helpers for the supplier, product, window and stock tests."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from db.catalog_models import Notification
from domain.suppliers import uscc_check_char
from tests.helpers import end_workflows, keep_run_history

IMG = "https://img.example.com/p.jpg"


def licence(n: int) -> str:
    """A valid 统一社会信用代码 (GB 32100-2015 checksum), distinct per n."""
    first17 = f"91310000MA{n:07d}"
    return first17 + uscc_check_char(first17)


def application(n: int = 1, categories=("food",), **overrides) -> dict:
    docs = [{"kind": "business_licence", "url": f"{IMG}?licence"}]
    if "food" in categories:
        docs.append({"kind": "food_business_licence", "url": f"{IMG}?food", "number": "JY13101150000001"})
    if "cosmetics" in categories:
        docs.append({"kind": "cosmetics_production_licence", "url": f"{IMG}?cos"})
    body = {"kind": "enterprise", "name": f"上海优选供应链{n}号有限公司", "licence_no": licence(n),
            "contact_name": "李经理", "contact_phone": "13900139000", "categories": list(categories),
            "documents": docs, "wechatpay_mchid": "1900000109"}
    return body | overrides


def product(title="有机红富士苹果 5斤装", category="food", price=5_900, stock=100, commission_bps=2_000, **extra) -> dict:
    sku = {"spec": "5斤", "price_fen": price, "stock": stock, "commission_bps": commission_bps}
    return {"title": title, "category": category, "description": "产地直发", "images": [IMG],
            "materials": [{"kind": "text", "content": "脆甜多汁，产地直发"}], "skus": [sku]} | extra


async def wait_progress(client, wf_id: str, query, status, timeout: float = 15.0):
    handle = client.get_workflow_handle(wf_id)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        progress = await handle.query(query)
        if progress is not None and progress.status == status:
            return progress
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{wf_id} at {progress.status if progress else None}, wanted {status}")
        await asyncio.sleep(0.05)


async def wait_until(predicate, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def notifications(sessions, kind: str, **where) -> list[Notification]:
    with sessions() as s:
        return list(s.scalars(select(Notification).filter_by(kind=kind, **where).order_by(Notification.id)))


async def keep_workflow_history(env, wf_id: str, name: str) -> None:
    await keep_run_history(env, wf_id, None, name)


async def stop_running(env, *wf_ids: str) -> None:
    """Terminate workflows a test leaves waiting, so skipped time elsewhere cannot wake them."""
    await end_workflows(env.client, wf_ids)


def active_supplier(sessions, n: int, categories=("food", "general"), fee_bps: int = 300) -> tuple[int, int]:
    """An onboarded supplier (as SupplierOnboardingWorkflow leaves it): (user id, supplier id)."""
    from db.catalog_models import SupplierProfile
    from db.models import Supplier, User

    with sessions.begin() as s:
        user = User(role="supplier", username=f"shop{n}", display_name=f"shop{n}")
        s.add(user)
        s.flush()
        supplier = Supplier(owner_user_id=user.id, name=f"供应商{n}", status="active", service_fee_bps=fee_bps)
        s.add(supplier)
        s.flush()
        s.add(SupplierProfile(supplier_id=supplier.id, kind="enterprise", licence_no=licence(1000 + n),
                              contact_name="王", contact_phone="13900139000", categories=list(categories),
                              documents=[]))
        return user.id, supplier.id
