"""Helpers for the console tests: staff with passwords, and one item waiting in each of the
supplier, product and refund queues, made through the API as a real supplier and buyer would."""

from __future__ import annotations

import re
from dataclasses import dataclass

from api.auth import hash_password
from db.models import User
from domain.order_status import OrderStatus
from domain.refunds import RefundStatus
from domain.suppliers import OnboardingStatus
from tests.catalog_helpers import active_supplier, application, product, wait_progress
from tests.helpers import pay, place, ship_and_deliver, wait_refund, wait_status
from workflows.product import ProductReviewWorkflow
from workflows.product import workflow_id as product_workflow_id
from workflows.supplier import SupplierOnboardingWorkflow
from workflows.supplier import workflow_id as supplier_workflow_id

PASSWORD = "console-pass-1"


def staff_user(sessions, role: str, username: str) -> int:
    with sessions.begin() as s:
        user = User(role=role, username=username, display_name=username, password_hash=hash_password(PASSWORD))
        s.add(user)
        s.flush()
        return user.id


@dataclass
class Waiting:
    supplier_id: int
    product_id: int
    refund_no: str
    order_no: str


async def fill_queues(api, sandbox, temporal_env, sessions, token, demo) -> Waiting:
    body = application(7) | {"account": {"username": "applicant7", "password": "s3cret-pass"}}
    applied = await api.post("/suppliers", json=body)
    assert applied.status_code == 201, applied.text
    supplier_id = applied.json()["supplier_id"]
    await wait_progress(temporal_env.client, supplier_workflow_id(supplier_id), SupplierOnboardingWorkflow.progress,
                        OnboardingStatus.PENDING_REVIEW)

    owner, _ = active_supplier(sessions, 8)
    submitted = await api.post("/products", headers=token(owner, "supplier"), json=product(title="高山绿茶 250g"))
    assert submitted.status_code == 201, submitted.text
    product_id = submitted.json()["product_id"]
    from domain.catalog import ProductStatus

    await wait_progress(temporal_env.client, product_workflow_id(product_id), ProductReviewWorkflow.progress,
                        ProductStatus.PENDING_REVIEW)

    buyer = token(demo.buyer_user_id, "buyer")
    order_no = (await place(api, buyer, demo, quantity=3)).json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    # support reviews quality claims (a cancel or a no-reason return is never reviewed)
    await ship_and_deliver(api, sandbox, temporal_env.client, token(demo.supplier_user_id, "supplier"), order_no,
                           "SF7000000001")
    asked = await api.post(f"/orders/{order_no}/refunds", headers=buyer, json={"kind": "quality_refund",
                                                                              "reason": "收到破损"})
    assert asked.status_code == 201, asked.text
    refund_no = asked.json()["refund_no"]
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REVIEWING)
    return Waiting(supplier_id, product_id, refund_no, order_no)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def console_login(api, username: str, password: str = PASSWORD):
    form = await api.get("/console/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text).group(1)
    return await api.post("/console/login", data={"username": username, "password": password, "nonce": nonce})
