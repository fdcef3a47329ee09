"""Product submission and review (ProductReviewWorkflow) through the HTTP API."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from db.catalog_models import ChannelsListing, ProductDetail
from db.models import Product, Sku
from domain.catalog import (
    ProductProgress,
    ProductReviewInput,
    ProductStatus,
    ProductSubmission,
    product_problems,
)
from workflows.product import ProductReviewWorkflow, workflow_id
from tests.catalog_helpers import (
    active_supplier,
    keep_workflow_history,
    notifications,
    product,
    stop_running,
    wait_progress,
    wait_until,
)

SUPPORT = 9_002


async def submit(api, headers, body=None):
    return await api.post("/products", json=body or product(), headers=headers)


async def pending(temporal_env, pid):
    return await wait_progress(temporal_env.client, workflow_id(pid), ProductReviewWorkflow.progress,
                               ProductStatus.PENDING_REVIEW)


async def test_product_is_reviewed_and_listed(api, temporal_env, sessions, token, clean_db):
    user_id, supplier_id = active_supplier(sessions, 1)
    supplier, support = token(user_id, "supplier"), token(SUPPORT, "support")
    submitted = await submit(api, supplier, product(video_url="https://v.example.com/a.mp4"))
    assert submitted.status_code == 201, submitted.text
    pid = submitted.json()["product_id"]
    await pending(temporal_env, pid)
    assert (await api.get("/products", headers=token(1, "promoter"))).json() == []  # not listed yet
    mine = (await api.get("/products/mine", headers=supplier)).json()
    assert [(p["id"], p["status"]) for p in mine] == [(pid, "pending_review")]

    assert (await api.post(f"/products/{pid}/review", headers=supplier, json={"action": "approve"})).status_code == 403
    no_reason = await api.post(f"/products/{pid}/review", headers=support, json={"action": "reject"})
    assert (no_reason.status_code, no_reason.json()["code"]) == (422, "INVALID_DECISION")
    approved = await api.post(f"/products/{pid}/review", headers=support,
                              json={"action": "approve", "newbie_pick": True})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "LISTED"
    assert approved.json()["channels"] == "LISTED"
    from integrations.channels import ChannelsClient

    with sessions() as s:
        channels_id = s.get(ChannelsListing, pid).channels_product_id
    shop = ChannelsClient.from_settings(api._transport.app.state.settings)
    in_shop = await shop.get_product(channels_id)  # the Channels sandbox has it, listed under our key
    assert in_shop.out_product_id == f"cc-product-{pid}"
    again = await api.post(f"/products/{pid}/review", headers=support, json={"action": "approve"})
    assert again.status_code == 409

    listed = (await api.get("/products", headers=token(1, "promoter"))).json()
    assert [(p["id"], p["newbie_pick"], p["max_commission_bps"]) for p in listed] == [(pid, True, 2_000)]
    assert listed[0]["images"] and listed[0]["materials"][0]["content"].startswith("脆甜")
    with sessions() as s:
        assert s.get(Product, pid).status == "listed"
        assert s.get(ChannelsListing, pid).out_product_id == f"cc-product-{pid}"
        assert s.get(ProductDetail, pid).reviewed_by_user_id == SUPPORT
    assert notifications(sessions, "product_listed", subject_id=str(pid))
    await keep_workflow_history(temporal_env, workflow_id(pid), "product_listed")


async def test_bad_products_are_refused_and_nothing_is_written(api, sessions, token, clean_db):
    user_id, _ = active_supplier(sessions, 2, categories=("general",), fee_bps=500)
    supplier = token(user_id, "supplier")
    sku = product()["skus"][0]
    cases = [
        (product(category="general", title="全网第一 最好的苹果"), "PROHIBITED_WORDS"),
        (product(category="food"), "CATEGORY_NOT_QUALIFIED"),
        (product(category="general", skus=[sku | {"price_fen": -1}]), "VALIDATION_ERROR"),
        (product(category="general", skus=[sku | {"price_fen": 0}]), "VALIDATION_ERROR"),
        (product(category="general", skus=[sku | {"commission_bps": 9_600}]), "COMMISSION_TOO_HIGH"),
        (product(category="general", skus=[sku | {"commission_bps": None, "commission_fixed_fen": 6_000}]),
         "COMMISSION_TOO_HIGH"),
        (product(category="general", skus=[sku | {"commission_fixed_fen": 10}]), "VALIDATION_ERROR"),
    ]
    for body, code in cases:
        response = await submit(api, supplier, body)
        assert (response.status_code, response.json()["code"]) == (422, code), (code, response.text)
    batch = await api.post("/products/batch", headers=supplier, json={"products": [
        product(category="general"), product(category="general", title="包治百病的苹果")]})
    assert (batch.status_code, batch.json()["code"]) == (422, "PROHIBITED_WORDS")
    assert batch.json()["message"].startswith("products[1]")
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Product)) == 0
        assert s.scalar(select(func.count()).select_from(Sku)) == 0
    assert (await submit(api, token(1, "promoter"))).status_code == 403
    stranger, _ = active_supplier(sessions, 3)
    with sessions.begin() as s:
        from db.models import Supplier
        s.scalar(select(Supplier).where(Supplier.owner_user_id == stranger)).status = "pending_review"
    pending_supplier = await submit(api, token(stranger, "supplier"))
    assert (pending_supplier.status_code, pending_supplier.json()["code"]) == (409, "SUPPLIER_NOT_ACTIVE")


async def test_batch_submission_and_supplier_sees_only_its_own(api, temporal_env, sessions, token, clean_db,
                                                              monkeypatch):
    # A one-second review SLA, in real time: no time skipping needed to see the reminders.
    monkeypatch.setattr(api._transport.app.state.settings, "product_review_sla", timedelta(seconds=1))
    a_user, _ = active_supplier(sessions, 4)
    b_user, _ = active_supplier(sessions, 5)
    a, b, support = token(a_user, "supplier"), token(b_user, "supplier"), token(SUPPORT, "support")
    batch = await api.post("/products/batch", headers=a, json={"products": [
        product(title=f"苹果{i}", category="general") for i in range(3)]})
    assert batch.status_code == 201, batch.text
    ids = [p["product_id"] for p in batch.json()]
    for pid in ids:
        await pending(temporal_env, pid)
    assert [p["id"] for p in (await api.get("/products/mine", headers=a)).json()] == ids
    assert (await api.get("/products/mine", headers=b)).json() == []
    assert (await api.get(f"/products/{ids[0]}", headers=b)).status_code == 404
    assert (await api.get(f"/products/{ids[0]}", headers=a)).status_code == 200
    assert (await api.get(f"/products/{ids[0]}", headers=token(1, "promoter"))).status_code == 404
    rejected = await api.post(f"/products/{ids[0]}/review", headers=support,
                              json={"action": "reject", "reason": "图片不清晰"})
    assert rejected.json()["status"] == "REJECTED"
    mine = {p["id"]: p for p in (await api.get("/products/mine", headers=a)).json()}
    assert (mine[ids[0]]["status"], mine[ids[0]]["review_note"]) == ("rejected", "图片不清晰")
    await keep_workflow_history(temporal_env, workflow_id(ids[0]), "product_rejected")

    # Past the review SLA, support is reminded (the rejected one is not).
    await wait_until(lambda: len(notifications(sessions, "review_overdue")) >= 2)
    assert {n.subject_id for n in notifications(sessions, "review_overdue")} >= {str(ids[1]), str(ids[2])}
    await stop_running(temporal_env, *[workflow_id(pid) for pid in ids[1:]])


async def test_workflow_checks_reject_a_product_that_breaks_the_rules(temporal_env, sessions, clean_db, api):
    """Rules enforced again inside the workflow (e.g. a product written around the API)."""
    _, supplier_id = active_supplier(sessions, 6, categories=("general",))
    with sessions.begin() as s:
        p = Product(supplier_id=supplier_id, title="史无前例 顶级好茶", category="food", status="pending_review")
        s.add(p)
        s.flush()
        s.add(Sku(product_id=p.id, spec="", price_fen=1_000, stock=5, commission_fixed_fen=990))
        s.add(ProductDetail(product_id=p.id, description="", images=[], materials=[]))
        pid = p.id
    handle = await temporal_env.client.start_workflow(
        ProductReviewWorkflow.run, ProductReviewInput(product_id=pid, supplier_id=supplier_id,
                                                      review_sla=timedelta(hours=1)),
        id=workflow_id(pid), task_queue=api._transport.app.state.settings.task_queue, result_type=ProductProgress)
    result = await handle.result()
    assert result.status == ProductStatus.REJECTED
    assert {p.code for p in result.problems} == {"PROHIBITED_WORDS", "CATEGORY_NOT_QUALIFIED", "COMMISSION_TOO_HIGH"}
    with sessions() as s:
        assert s.get(Product, pid).status == "rejected"
    await keep_workflow_history(temporal_env, workflow_id(pid), "product_auto_rejected")


def test_product_rules():
    body = ProductSubmission.model_validate(product())
    assert product_problems(body, service_fee_bps=300, approved_categories={"food"}) == []
    # commission may be exactly price − fee, never more
    edge = ProductSubmission.model_validate(product(commission_bps=9_700))
    assert product_problems(edge, service_fee_bps=300, approved_categories={"food"}) == []
    over = ProductSubmission.model_validate(product(price=10_000, commission_bps=9_701))
    assert [p.code for p in product_problems(over, service_fee_bps=300, approved_categories={"food"})] == [
        "COMMISSION_TOO_HIGH"]
