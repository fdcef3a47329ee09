"""A supplier edits a listed product's title, description or images: the product stays on sale
as it was while support reviews the change; approval applies it, rejection keeps the old content
and tells the supplier why; a change that fails the automatic checks never reaches support."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from db.catalog_models import Notification, ProductDetail
from db.models import Product
from domain.catalog import ProductProgress, ProductStatus, edit_workflow_id
from tests.channels_helpers import world  # noqa: F401 - a fixture
from tests.helpers import keep_run_history, make_user, result_skipping_time
from workflows.product import ProductReviewWorkflow


async def wait_review_status(temporal_env, wf_id: str, status: ProductStatus) -> None:
    handle = temporal_env.client.get_workflow_handle(wf_id)
    for _ in range(300):
        progress = await handle.query(ProductReviewWorkflow.progress)
        if progress is not None and progress.status == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{wf_id} never reached {status}")


def title_of(sessions, product_id: int) -> str:
    with sessions() as s:
        return s.get(Product, product_id).title


async def test_an_edit_is_reviewed_while_the_old_content_stays_on_sale(api, demo, token, temporal_env, sessions):
    supplier = token(demo.supplier_user_id, "supplier")
    support = token(make_user(sessions, "support", "edit-reviewer"), "support")
    old_title = title_of(sessions, demo.product_id)

    edit = await api.patch(f"/products/{demo.product_id}", headers=supplier,
                           json={"title": "2025 春茶 明前龙井 250g", "description": "新茶上市"})
    assert edit.status_code == 202, edit.text
    edit_id, wf_id = edit.json()["edit_id"], edit.json()["workflow_id"]
    assert wf_id == edit_workflow_id(demo.product_id, edit_id)
    second = await api.patch(f"/products/{demo.product_id}", headers=supplier, json={"title": "另一个标题"})
    assert second.status_code == 409 and second.json()["code"] == "EDIT_PENDING"
    other = token(make_user(sessions, "supplier", "edit-stranger"), "supplier")
    assert (await api.patch(f"/products/{demo.product_id}", headers=other, json={"title": "抢标题"})).status_code == 404

    await wait_review_status(temporal_env, wf_id, ProductStatus.PENDING_REVIEW)
    with sessions() as s:
        product = s.get(Product, demo.product_id)
        assert (product.title, product.status) == (old_title, "listed")  # still on sale as it was
    approved = await api.post(f"/product-edits/{edit_id}/review", headers=support, json={"action": "approve"})
    assert approved.status_code == 200 and approved.json()["status"] == "LISTED", approved.text
    with sessions() as s:
        assert s.get(Product, demo.product_id).title == "2025 春茶 明前龙井 250g"
        assert s.get(ProductDetail, demo.product_id).description == "新茶上市"
    edits = (await api.get(f"/products/{demo.product_id}/edits", headers=supplier)).json()
    assert [(e["edit_id"], e["status"]) for e in edits] == [(edit_id, "approved")]
    await result_skipping_time(temporal_env, wf_id, ProductProgress)
    await keep_run_history(temporal_env, wf_id, None, "product_edit_approved")

    rejected_edit = await api.patch(f"/products/{demo.product_id}", headers=supplier,
                                    json={"images": ["https://img.example.com/new-cover.jpg"]})
    assert rejected_edit.status_code == 202, rejected_edit.text
    await wait_review_status(temporal_env, rejected_edit.json()["workflow_id"], ProductStatus.PENDING_REVIEW)
    no_reason = await api.post(f"/product-edits/{rejected_edit.json()['edit_id']}/review", headers=support,
                               json={"action": "reject"})
    assert no_reason.status_code in (409, 422), no_reason.text
    refused = await api.post(f"/product-edits/{rejected_edit.json()['edit_id']}/review", headers=support,
                             json={"action": "reject", "reason": "主图含水印"})
    assert refused.status_code == 200 and refused.json()["status"] == "REJECTED", refused.text
    with sessions() as s:
        assert s.get(ProductDetail, demo.product_id).images != ["https://img.example.com/new-cover.jpg"]
        told = s.scalars(select(Notification.message).where(Notification.kind == "product_edit_rejected")).all()
        assert any("主图含水印" in m for m in told)
        assert s.get(Product, demo.product_id).status == "listed"


async def test_an_edit_with_prohibited_words_is_refused_by_the_checks(api, demo, token, temporal_env, sessions):
    supplier = token(demo.supplier_user_id, "supplier")
    old_title = title_of(sessions, demo.product_id)
    edit = await api.patch(f"/products/{demo.product_id}", headers=supplier, json={"title": "全网第一 龙井"})
    assert edit.status_code == 202, edit.text
    progress = await result_skipping_time(temporal_env, edit.json()["workflow_id"], ProductProgress)
    assert progress.status == ProductStatus.REJECTED
    assert [p.code for p in progress.problems] == ["PROHIBITED_WORDS"]
    assert title_of(sessions, demo.product_id) == old_title
    await keep_run_history(temporal_env, edit.json()["workflow_id"], None, "product_edit_auto_rejected")
    edits = (await api.get(f"/products/{demo.product_id}/edits", headers=supplier)).json()
    assert edits[0]["status"] == "rejected" and "prohibited" in edits[0]["reason"]


async def test_an_approved_edit_reaches_the_channels_shop(api, world, temporal_env, sessions, token):  # noqa: F811
    """The shop's copy of a listed product follows its approved title through the sync outbox."""
    from db.catalog_models import ChannelsListing
    from integrations.channels import ChannelsClient
    from tests.catalog_helpers import product, wait_progress, wait_until
    from workflows.product import workflow_id

    supplier = token(world["supplier_user_id"], "supplier")
    support = token(make_user(sessions, "support", "shop-edit-reviewer"), "support")
    submitted = await api.post("/products", headers=supplier, json=product(title="勐海古树普洱 357g"))
    assert submitted.status_code == 201, submitted.text
    pid = submitted.json()["product_id"]
    await wait_progress(temporal_env.client, workflow_id(pid), ProductReviewWorkflow.progress,
                        ProductStatus.PENDING_REVIEW)
    assert (await api.post(f"/products/{pid}/review", headers=support, json={"action": "approve"})).status_code == 200
    shop = ChannelsClient.from_settings(api._transport.app.state.settings)

    def listing() -> str | None:
        with sessions() as s:
            row = s.get(ChannelsListing, pid)
            return row.channels_product_id if row is not None else None

    await wait_until(lambda: listing() is not None)
    edit = await api.patch(f"/products/{pid}", headers=supplier, json={"title": "勐海古树普洱 357g 2026 春茶"})
    assert edit.status_code == 202, edit.text
    await wait_review_status(temporal_env, edit.json()["workflow_id"], ProductStatus.PENDING_REVIEW)
    assert (await shop.get_product(listing())).title == "勐海古树普洱 357g"  # the old one meanwhile
    approved = await api.post(f"/product-edits/{edit.json()['edit_id']}/review", headers=support,
                              json={"action": "approve"})
    assert approved.status_code == 200, approved.text
    titles = []
    for _ in range(100):
        titles.append((await shop.get_product(listing())).title)
        if titles[-1] == "勐海古树普洱 357g 2026 春茶":
            break
        await asyncio.sleep(0.1)
    assert titles[-1] == "勐海古树普洱 357g 2026 春茶", titles[-3:]
