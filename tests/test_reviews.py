"""Reviews (评价): a buyer reviews each line once after receiving it; a prohibited word holds the
review for support's moderation; the supplier answers once in clean words; everyone reads a
product's published reviews with its rating, the reviewers masked."""

from __future__ import annotations

from sqlalchemy import select, update

from db.models import OrderLine, User
from domain.order_status import OrderStatus
from tests.helpers import make_user, pay, place, ship_and_deliver, wait_status


async def received_order(api, sandbox, demo, token, temporal_env, sessions, waybill: str) -> tuple[str, int]:
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    placed = await place(api, buyer, demo, quantity=1)
    assert placed.status_code == 201, placed.text
    order_no = placed.json()["order_no"]
    with sessions() as s:
        line_id = s.scalar(select(OrderLine.id).where(OrderLine.order_no == order_no))
    early = await api.post(f"/orders/{order_no}/reviews", headers=buyer, json={"line_id": line_id, "rating": 5})
    assert early.status_code == 409 and early.json()["code"] == "NOT_REVIEWABLE", early.text
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, waybill)
    assert (await api.post(f"/orders/{order_no}/confirm-receipt", headers=buyer)).status_code == 200
    await wait_status(temporal_env.client, order_no, OrderStatus.RECEIVED)
    return order_no, line_id


async def test_a_received_line_is_reviewed_once_answered_once_and_shown_masked(
        api, sandbox, demo, token, temporal_env, sessions):
    with sessions.begin() as s:
        s.execute(update(User).where(User.id == demo.buyer_user_id).values(display_name="王小明"))
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    order_no, line_id = await received_order(api, sandbox, demo, token, temporal_env, sessions, "SFREVIEW0001")

    written = await api.post(f"/orders/{order_no}/reviews", headers=buyer, json={
        "line_id": line_id, "rating": 4, "text": "茶汤清亮，回甘明显", "images": ["https://img.example.com/r1.jpg"]})
    assert written.status_code == 201, written.text
    assert written.json()["status"] == "published" and written.json()["reviewer"] == "王***"
    again = await api.post(f"/orders/{order_no}/reviews", headers=buyer, json={"line_id": line_id, "rating": 5})
    assert again.status_code == 409 and again.json()["code"] == "ALREADY_REVIEWED"
    stranger = token(make_user(sessions, "buyer", "review-stranger"), "buyer")
    theirs = await api.post(f"/orders/{order_no}/reviews", headers=stranger, json={"line_id": line_id, "rating": 1})
    assert theirs.status_code == 404
    bad_image = await api.post(f"/orders/{order_no}/reviews", headers=buyer,
                               json={"line_id": line_id, "rating": 5, "images": ["javascript:alert(1)"]})
    assert bad_image.status_code == 422

    review_id = written.json()["id"]
    other = token(make_user(sessions, "supplier", "not-the-seller"), "supplier")
    assert (await api.post(f"/reviews/{review_id}/reply", headers=other, json={"text": "谢谢"})).status_code == 404
    dirty = await api.post(f"/reviews/{review_id}/reply", headers=supplier, json={"text": "全网第一的好茶"})
    assert dirty.status_code == 422 and dirty.json()["code"] == "PROHIBITED_WORDS"
    answered = await api.post(f"/reviews/{review_id}/reply", headers=supplier, json={"text": "感谢支持，欢迎再来"})
    assert answered.status_code == 200 and answered.json()["reply"] == "感谢支持，欢迎再来"
    twice = await api.post(f"/reviews/{review_id}/reply", headers=supplier, json={"text": "再次感谢"})
    assert twice.status_code == 409 and twice.json()["code"] == "ALREADY_REPLIED"

    shown = await api.get(f"/products/{demo.product_id}/reviews", headers=stranger)
    assert shown.status_code == 200, shown.text
    page = shown.json()
    assert (page["count"], page["average_tenths"]) == (1, 40)
    (item,) = page["reviews"]
    assert item["reviewer"] == "王***" and item["reply"] == "感谢支持，欢迎再来"
    assert "王小明" not in shown.text and "13800138000" not in shown.text and "buyer_user_id" not in shown.text


async def test_a_prohibited_word_holds_a_review_for_moderation(api, sandbox, demo, token, temporal_env, sessions):
    buyer = token(demo.buyer_user_id, "buyer")
    support = token(make_user(sessions, "support", "review-moderator"), "support")
    first_no, first_line = await received_order(api, sandbox, demo, token, temporal_env, sessions, "SFREVIEW0002")
    second_no, second_line = await received_order(api, sandbox, demo, token, temporal_env, sessions, "SFREVIEW0003")

    held = await api.post(f"/orders/{first_no}/reviews", headers=buyer,
                          json={"line_id": first_line, "rating": 5, "text": "包治百病的神茶"})
    assert held.status_code == 201 and held.json()["status"] == "pending_moderation", held.text
    listed = await api.post(f"/orders/{second_no}/reviews", headers=buyer,
                            json={"line_id": second_line, "rating": 2, "text": "包装有破损"})
    assert listed.json()["status"] == "published"
    page = (await api.get(f"/products/{demo.product_id}/reviews", headers=buyer)).json()
    assert [r["rating"] for r in page["reviews"]] == [2]  # the held one is not shown

    queue = await api.get("/reviews/moderation", headers=support)
    assert [r["id"] for r in queue.json()] == [held.json()["id"]]
    assert (await api.get("/reviews/moderation", headers=buyer)).status_code == 403
    approved = await api.post(f"/reviews/{held.json()['id']}/moderation", headers=support,
                              json={"action": "approve", "reason": "描述的是个人感受，可以展示"})
    assert approved.status_code == 200 and approved.json()["status"] == "published", approved.text
    again = await api.post(f"/reviews/{held.json()['id']}/moderation", headers=support,
                           json={"action": "reject", "reason": "改主意了"})
    assert again.status_code == 409 and again.json()["code"] == "NOT_AWAITING_MODERATION"
    page = (await api.get(f"/products/{demo.product_id}/reviews", headers=buyer)).json()
    assert (page["count"], page["average_tenths"]) == (2, 35)
    third_no, third_line = await received_order(api, sandbox, demo, token, temporal_env, sessions, "SFREVIEW0004")
    held = await api.post(f"/orders/{third_no}/reviews", headers=buyer,
                          json={"line_id": third_line, "rating": 1, "text": "无副作用？假的"})
    rejected = await api.post(f"/reviews/{held.json()['id']}/moderation", headers=support,
                              json={"action": "reject", "reason": "含医疗功效用语"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    page = (await api.get(f"/products/{demo.product_id}/reviews", headers=buyer)).json()
    assert (page["count"], page["average_tenths"]) == (2, 35)  # a rejected review counts for nothing
    mine = (await api.get("/reviews/mine", headers=buyer)).json()
    assert sorted(r["status"] for r in mine) == ["published", "published", "rejected"]
    assert next(r for r in mine if r["status"] == "rejected")["moderation_note"] == "含医疗功效用语"
