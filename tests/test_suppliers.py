"""Supplier onboarding through the HTTP API: SupplierOnboardingWorkflow with automatic checks,
support's validated decision, the more-info loop, SLA escalation, expiry and suspension."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType

from db.catalog_models import ProfitSharingReceiver, SupplierProfile
from db.models import Supplier, User
from domain.suppliers import OnboardingProgress, OnboardingStatus
from domain.search_attributes import BUSINESS_STATUS, SUPPLIER_ID
from workflows.supplier import SupplierOnboardingWorkflow, workflow_id
from tests.catalog_helpers import (
    application,
    keep_workflow_history,
    licence,
    notifications,
    stop_running,
    wait_progress,
    wait_until,
)

SUPPORT = 9_001


async def apply_new(api, n: int = 1, **overrides):
    body = application(n, **overrides) | {"account": {"username": f"supplier{n}", "password": "s3cret-pass"}}
    return await api.post("/suppliers", json=body)


async def pending(temporal_env, supplier_id: int):
    return await wait_progress(temporal_env.client, workflow_id(supplier_id), SupplierOnboardingWorkflow.progress,
                               OnboardingStatus.PENDING_REVIEW)


async def test_supplier_is_approved_with_a_service_fee(api, temporal_env, sessions, token, clean_db):
    applied = await apply_new(api)
    assert applied.status_code == 201, applied.text
    sid, supplier = applied.json()["supplier_id"], {"Authorization": f"Bearer {applied.json()['access_token']}"}
    await pending(temporal_env, sid)
    login = await api.post("/auth/token", json={"username": "supplier1", "password": "s3cret-pass"})
    assert login.status_code == 200 and login.json()["role"] == "supplier"
    assert (await api.get("/suppliers/me", headers=supplier)).json()["status"] == "pending_review"

    support = token(SUPPORT, "support")
    assert (await api.post(f"/suppliers/{sid}/review", headers=supplier,
                           json={"action": "approve", "service_fee_bps": 300})).status_code == 403
    assert (await api.post(f"/suppliers/{sid}/review", headers=token(SUPPORT, "operator"),
                           json={"action": "approve", "service_fee_bps": 300})).status_code == 403

    handle = temporal_env.client.get_workflow_handle(workflow_id(sid))
    events_before = len((await handle.fetch_history()).events)
    for fee in (600, 50, None):  # outside 1%–5%: refused by the update validator
        refused = await api.post(f"/suppliers/{sid}/review", headers=support,
                                 json={"action": "approve", "service_fee_bps": fee})
        assert refused.status_code == 422 and refused.json()["code"] == "INVALID_DECISION", refused.text
    refused = await api.post(f"/suppliers/{sid}/review", headers=support, json={"action": "reject"})
    assert refused.status_code == 422 and refused.json()["code"] == "INVALID_DECISION"
    # Validator rejections leave no update in the history (Temporal's test server still logs the
    # workflow tasks that ran the validator; a real server drops those speculative tasks too).
    after = (await handle.fetch_history()).events[events_before:]
    assert {EventType.Name(e.event_type) for e in after} <= {
        "EVENT_TYPE_WORKFLOW_TASK_SCHEDULED", "EVENT_TYPE_WORKFLOW_TASK_STARTED", "EVENT_TYPE_WORKFLOW_TASK_COMPLETED"}

    approved = await api.post(f"/suppliers/{sid}/review", headers=support,
                              json={"action": "approve", "service_fee_bps": 300})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "APPROVED"
    again = await api.post(f"/suppliers/{sid}/review", headers=support,
                           json={"action": "reject", "reason": "changed my mind"})
    assert again.status_code == 409

    with sessions() as s:
        row = s.get(Supplier, sid)
        assert (row.status, row.service_fee_bps) == ("active", 300)
        receiver = s.get(ProfitSharingReceiver, sid)
        assert (receiver.receiver_type, receiver.account, receiver.status) == (
            "MERCHANT_ID", "1900000109", "ADDED")
        assert s.get(SupplierProfile, sid).reviewed_by_user_id == SUPPORT
    assert len(notifications(sessions, "supplier_approved", subject_id=str(sid))) == 1
    mine = (await api.get("/notifications", headers=supplier)).json()
    assert [n["kind"] for n in mine] == ["supplier_approved"]

    described = await handle.describe()
    assert described.typed_search_attributes.get(BUSINESS_STATUS) == "APPROVED"
    assert described.typed_search_attributes.get(SUPPLIER_ID) == [str(sid)]
    await keep_workflow_history(temporal_env, workflow_id(sid), "supplier_approved")


async def test_bad_applications_get_clear_errors_and_write_nothing(api, sessions, token, clean_db, temporal_env):
    bad_checksum = licence(7)[:-1] + ("0" if licence(7)[-1] != "0" else "1")
    cases = [
        (application(2, licence_no=bad_checksum), 422, "INVALID_LICENCE_CHECKSUM"),
        (application(2, licence_no="91310000MA00000"), 422, "INVALID_LICENCE_FORMAT"),
        (application(2, licence_no="91310000MA0000I07O"), 422, "INVALID_LICENCE_FORMAT"),
        (application(2) | {"documents": [{"kind": "business_licence", "url": "https://x.cn/a.jpg"}]},
         422, "MISSING_DOCUMENTS"),
        (application(2, categories=["cosmetics"]) | {"documents": [{"kind": "business_licence",
                                                                    "url": "https://x.cn/a.jpg"}]},
         422, "MISSING_DOCUMENTS"),
        (application(2, kind="individual"), 422, "MISSING_DOCUMENTS"),  # 经营者身份证
        (application(2, categories=["weapons"]), 422, "VALIDATION_ERROR"),
        (application(2, contact_phone="12345"), 422, "VALIDATION_ERROR"),
    ]
    for body, status, code in cases:
        response = await api.post("/suppliers", json=body | {"account": {"username": "bad", "password": "s3cret-pass"}})
        assert (response.status_code, response.json()["code"]) == (status, code), (code, response.text)
    cosmetics = await api.post("/suppliers", json=application(2, categories=["cosmetics"]) | {
        "documents": [{"kind": "business_licence", "url": "https://x.cn/a.jpg"}],
        "account": {"username": "bad", "password": "s3cret-pass"}})
    assert "化妆品生产许可证" in cosmetics.json()["message"]
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Supplier)) == 0
        assert s.scalar(select(func.count()).select_from(User)) == 0

    first = await apply_new(api, 3)
    assert first.status_code == 201
    duplicate = await api.post("/suppliers", json=application(3) | {
        "account": {"username": "other", "password": "s3cret-pass"}})
    assert (duplicate.status_code, duplicate.json()["code"]) == (409, "DUPLICATE_LICENCE")
    again = await api.post("/suppliers", json=application(4), headers={
        "Authorization": f"Bearer {first.json()['access_token']}"})
    assert (again.status_code, again.json()["code"]) == (409, "ALREADY_APPLIED")
    no_one = await api.post("/suppliers", json=application(5))
    assert no_one.status_code == 401
    as_buyer = await api.post("/suppliers", json=application(5), headers=token(1, "buyer"))
    assert as_buyer.status_code == 403
    await stop_running(temporal_env, workflow_id(first.json()["supplier_id"]))


async def test_more_info_loop_with_sla_escalation_then_rejection(api, temporal_env, sessions, token, clean_db,
                                                                 monkeypatch):
    # Periods are workflow input: a one-second review SLA runs in real time, no skipping needed.
    monkeypatch.setattr(api._transport.app.state.settings, "supplier_review_sla", timedelta(seconds=1))
    applied = await apply_new(api, 11, categories=["general"])
    sid, supplier = applied.json()["supplier_id"], {"Authorization": f"Bearer {applied.json()['access_token']}"}
    support = token(SUPPORT, "support")
    await pending(temporal_env, sid)

    await wait_until(lambda: notifications(sessions, "review_overdue", subject_id=str(sid)))  # SLA passed
    overdue = notifications(sessions, "review_overdue", subject_id=str(sid))
    assert overdue[0].recipient_role == "support"
    assert any(n["kind"] == "review_overdue" for n in (await api.get("/notifications", headers=support)).json())

    early = await api.post("/suppliers/me/resubmit", headers=supplier, json=application(11, categories=["general"]))
    assert (early.status_code, early.json()["code"]) == (409, "NOT_AWAITING_RESUBMISSION")
    asked = await api.post(f"/suppliers/{sid}/review", headers=support,
                           json={"action": "more_info", "reason": "请上传清晰的营业执照照片"})
    assert asked.status_code == 200, asked.text
    assert asked.json()["status"] == "MORE_INFO"
    me = (await api.get("/suppliers/me", headers=supplier)).json()
    assert (me["status"], me["review_note"]) == ("more_info", "请上传清晰的营业执照照片")
    assert 1 <= me["escalations"] <= 3  # at most MAX_ESCALATIONS reminders per round
    assert (await api.post(f"/suppliers/{sid}/review", headers=support,
                           json={"action": "approve", "service_fee_bps": 200})).status_code == 409

    bad = await api.post("/suppliers/me/resubmit", headers=supplier,
                         json=application(11, categories=["food"]) | {"documents": [
                             {"kind": "business_licence", "url": "https://x.cn/b.jpg"}]})
    assert (bad.status_code, bad.json()["code"]) == (422, "MISSING_DOCUMENTS")
    resubmitted = await api.post("/suppliers/me/resubmit", headers=supplier,
                                 json=application(11, categories=["general"]) | {"documents": [
                                     {"kind": "business_licence", "url": "https://x.cn/clear.jpg"}]})
    assert resubmitted.status_code == 200, resubmitted.text
    progress = await pending(temporal_env, sid)
    assert progress.round == 2

    rejected = await api.post(f"/suppliers/{sid}/review", headers=support,
                              json={"action": "reject", "reason": "经营范围与类目不符"})
    assert rejected.json()["status"] == "REJECTED"
    with sessions() as s:
        assert s.get(Supplier, sid).status == "rejected"
        assert s.get(SupplierProfile, sid).open is False
        assert s.get(SupplierProfile, sid).resubmissions == 1
    assert notifications(sessions, "supplier_rejected", subject_id=str(sid))
    await keep_workflow_history(temporal_env, workflow_id(sid), "supplier_more_info_then_rejected")

    # Rejected: the same account may apply again (same licence, now free), a new review starts.
    reapplied = await api.post("/suppliers", headers=supplier, json=application(11, categories=["general"]))
    assert reapplied.status_code == 201, reapplied.text
    await pending(temporal_env, sid)
    await stop_running(temporal_env, workflow_id(sid))


async def test_unanswered_request_for_information_expires(api, temporal_env, sessions, token, clean_db,
                                                         monkeypatch):
    monkeypatch.setattr(api._transport.app.state.settings, "supplier_more_info_timeout", timedelta(seconds=1))
    applied = await apply_new(api, 21)
    sid, supplier = applied.json()["supplier_id"], {"Authorization": f"Bearer {applied.json()['access_token']}"}
    await pending(temporal_env, sid)
    asked = await api.post(f"/suppliers/{sid}/review", headers=token(SUPPORT, "support"),
                           json={"action": "more_info", "reason": "食品经营许可证已过期"})
    assert asked.status_code == 200
    handle = temporal_env.client.get_workflow_handle(workflow_id(sid), result_type=OnboardingProgress)
    result = await handle.result()  # no resubmission within the period
    assert result.status == OnboardingStatus.EXPIRED
    with sessions() as s:
        assert s.get(Supplier, sid).status == "expired"
    late = await api.post("/suppliers/me/resubmit", headers=supplier, json=application(21))
    assert late.status_code == 409
    assert notifications(sessions, "supplier_expired", subject_id=str(sid))
    await keep_workflow_history(temporal_env, workflow_id(sid), "supplier_more_info_expired")


async def test_automatic_checks_reject_a_licence_taken_in_the_meantime(api, temporal_env, sessions, clean_db):
    """A duplicate that slipped past the API (e.g. the holder's application reopened) is caught
    by the workflow's own checks."""
    first = await apply_new(api, 31)
    sid = first.json()["supplier_id"]
    await pending(temporal_env, sid)
    with sessions.begin() as s:  # simulate an application written around the API
        user = User(role="supplier", username="sneaky", display_name="x")
        s.add(user)
        s.flush()
        other = Supplier(owner_user_id=user.id, name="x", status="pending_review", service_fee_bps=0)
        s.add(other)
        s.flush()
        profile = SupplierProfile(supplier_id=other.id, kind="enterprise", licence_no=licence(31), open=False,
                                  contact_name="x", contact_phone="13900139000", categories=["general"],
                                  documents=[{"kind": "business_licence", "url": "https://x.cn/a.jpg"}])
        s.add(profile)
        other_id = other.id
    from workflows.supplier import SupplierOnboardingInput
    from domain.suppliers import ReviewTimings

    handle = await temporal_env.client.start_workflow(
        SupplierOnboardingWorkflow.run,
        SupplierOnboardingInput(supplier_id=other_id, timings=ReviewTimings(review_sla=timedelta(hours=1)),
                                fee_bps_min=100, fee_bps_max=500),
        id=workflow_id(other_id), task_queue=temporal_env_task_queue(api))
    result = await handle.result()
    assert result.status == OnboardingStatus.REJECTED
    assert [p.code for p in result.problems] == ["DUPLICATE_LICENCE"]
    with sessions() as s:
        assert s.get(Supplier, other_id).status == "rejected"
    await keep_workflow_history(temporal_env, workflow_id(other_id), "supplier_auto_rejected")
    await stop_running(temporal_env, workflow_id(sid))


def temporal_env_task_queue(api) -> str:
    return api._transport.app.state.settings.task_queue
