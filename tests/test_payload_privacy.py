"""Encrypted workflow payloads: an order's history in Temporal holds no buyer name, phone,
address or openid in clear; Temporal UI reads it decoded through the API's codec endpoint,
for support and operators only; payload keys rotate (new payloads with the newest key, old ones
still decrypt) and histories from before encryption still read."""

from __future__ import annotations

import base64
import json
import os

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from db.models import User
from domain import keys
from domain.order_status import OrderStatus
from integrations.payload_codec import ENCODING, KEY_ID, EncryptionCodec, UnknownPayloadKey
from integrations.temporal import payload_codec
from settings import Settings
from tests.helpers import ADDRESS, keep_history, make_user, pay, place, wait_status
from workflows.order import workflow_id

UI_ORIGIN = "http://localhost:8233"


def _all_payloads(history) -> list[Payload]:
    """Every Payload message anywhere in the history's events, but search attributes (what
    operators filter by: order number, status) and the SDK's own patch markers (a
    `workflow.patched` id), which Temporal writes without the codec and hold nothing personal."""
    found: list[Payload] = []

    def walk(message) -> None:
        if message.DESCRIPTOR.full_name == "temporal.api.common.v1.SearchAttributes" or getattr(
                message, "marker_name", None) == "core_patch":
            return
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            if field.message_type.GetOptions().map_entry:
                kind = field.message_type.fields_by_name["value"].message_type
                items = list(value.values()) if kind is not None else []
            else:
                kind = field.message_type
                items = list(value) if field.is_repeated else [value]
            for item in items:
                if kind.full_name == "temporal.api.common.v1.Payload":
                    found.append(item)
                else:
                    walk(item)

    for event in history.events:
        walk(event)
    return found


def _buyer_openid(sessions, user_id: int) -> str:
    with sessions() as s:
        return s.get(User, user_id).openid


async def _paid_order(api, sandbox, demo, token, temporal_env) -> str:
    placed = await place(api, token(demo.buyer_user_id, "buyer"), demo, quantity=1)
    assert placed.status_code == 201, placed.text
    order_no = placed.json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    return order_no


async def test_an_orders_history_holds_no_personal_data_in_clear(api, sandbox, demo, token, temporal_env, sessions):
    order_no = await _paid_order(api, sandbox, demo, token, temporal_env)
    openid = _buyer_openid(sessions, demo.buyer_user_id)
    history = await temporal_env.client.get_workflow_handle(workflow_id(order_no)).fetch_history()
    secrets_in_clear = [ADDRESS["receiver"], ADDRESS["phone"], ADDRESS["detail"], openid]

    raw = b"".join(event.SerializeToString() for event in history.events) + history.to_json().encode()
    for value in secrets_in_clear:
        assert value.encode() not in raw, f"{value!r} is in the workflow history in clear"
        assert base64.b64encode(value.encode()) not in raw

    payloads = _all_payloads(history)
    assert len(payloads) > 5
    plain = [(p.metadata.get("encoding"), p.data[:80]) for p in payloads if p.metadata.get("encoding") != ENCODING]
    assert not plain, f"payloads left unencrypted: {plain}"
    assert {p.metadata[KEY_ID] for p in payloads} == {temporal_env.client.data_converter.payload_codec.key_id.encode()}
    # the data is there, sealed: the codec's key reads it back
    decoded = b"".join(p.data for p in await temporal_env.client.data_converter.payload_codec.decode(payloads))
    for value in secrets_in_clear:
        assert value.encode() in decoded
    # recorded encrypted (with the tests' master key): tests/test_replay.py replays it
    await keep_history(temporal_env, order_no, "order_paid_encrypted_payloads")


async def test_temporal_ui_decodes_through_the_codec_endpoint_for_staff_only(
        api, sandbox, demo, token, temporal_env, sessions):
    order_no = await _paid_order(api, sandbox, demo, token, temporal_env)
    history = await temporal_env.client.get_workflow_handle(workflow_id(order_no)).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes.input
    body = json_format.MessageToJson(started)  # what Temporal UI posts: {"payloads": [...]}
    headers = {"Content-Type": "application/json", "X-Namespace": "default", "Origin": UI_ORIGIN}

    nobody = await api.post("/codec/decode", content=body, headers=headers)
    assert (nobody.status_code, nobody.json()["code"]) == (401, "UNAUTHORIZED")
    buyer = await api.post("/codec/decode", content=body, headers=headers | token(demo.buyer_user_id, "buyer"))
    assert (buyer.status_code, buyer.json()["code"]) == (403, "FORBIDDEN")
    supplier = await api.post("/codec/decode", content=body,
                              headers=headers | token(demo.supplier_user_id, "supplier"))
    assert supplier.status_code == 403
    assert ADDRESS["phone"] not in nobody.text + buyer.text + supplier.text

    support = token(make_user(sessions, "support", "kefu-codec"), "support")
    decoded = await api.post("/codec/decode", content=body, headers=headers | support)
    assert decoded.status_code == 200, decoded.text
    assert decoded.headers["access-control-allow-origin"] == UI_ORIGIN
    assert decoded.headers["access-control-allow-credentials"] == "true"
    payloads = json_format.Parse(decoded.text, Payloads()).payloads
    assert payloads[0].metadata["encoding"] == b"json/plain"
    order_input = json.loads(payloads[0].data)
    assert order_input["order"]["address"]["phone"] == ADDRESS["phone"]
    assert order_input["order"]["buyer_openid"] == _buyer_openid(sessions, demo.buyer_user_id)

    # encode gives back what decode reads; a plain payload (an old history) passes through
    encoded = await api.post("/codec/encode", content=decoded.text, headers=headers | support)
    assert encoded.status_code == 200
    sealed = json_format.Parse(encoded.text, Payloads()).payloads[0]
    assert sealed.metadata["encoding"] == ENCODING and ADDRESS["phone"].encode() not in sealed.data
    plain = json_format.MessageToJson(Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"},
                                                                 data=b'"hello"')]))
    passed = await api.post("/codec/decode", content=plain, headers=headers | support)
    assert json_format.Parse(passed.text, Payloads()).payloads[0].data == b'"hello"'
    garbled = await api.post("/codec/decode", content="not json", headers=headers | support)
    assert (garbled.status_code, garbled.json()["code"]) == (400, "BAD_PAYLOADS")

    # the browser: a preflight from Temporal UI's origin is allowed, from anywhere else not
    preflight = {"Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,x-namespace"}
    allowed = await api.options("/codec/decode", headers=preflight)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == UI_ORIGIN
    evil = await api.options("/codec/decode", headers=preflight | {"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in evil.headers
    other_route = await api.get("/healthz", headers={"Origin": UI_ORIGIN})
    assert "access-control-allow-origin" not in other_route.headers  # CORS for /codec only

    # the UI's "include credentials": the staff token kept in an HttpOnly cookie for /codec
    kept = await api.post("/codec/session", headers=support)
    assert kept.status_code == 204 and "httponly" in kept.headers["set-cookie"].lower()
    by_cookie = await api.post("/codec/decode", content=body, headers=headers,
                               cookies={"chuchuang_codec": support["Authorization"].removeprefix("Bearer ")})
    assert by_cookie.status_code == 200
    buyer_cookie = await api.post("/codec/decode", content=body, headers=headers, cookies={
        "chuchuang_codec": token(demo.buyer_user_id, "buyer")["Authorization"].removeprefix("Bearer ")})
    assert buyer_cookie.status_code == 403
    # logging out ends the codec too
    assert (await api.post("/auth/logout", headers=support)).status_code == 204
    after = await api.post("/codec/decode", content=body, headers=headers | support)
    assert (after.status_code, after.json()["code"]) == (401, "SESSION_ENDED")


async def test_payload_keys_rotate_and_old_payloads_still_decrypt():
    old_key, new_key = os.urandom(32), os.urandom(32)
    before = EncryptionCodec("2026-01", {"2026-01": old_key})
    sealed_before = await before.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'{"phone":"13800138000"}')])

    rotated = EncryptionCodec("2026-07", {"2026-01": old_key, "2026-07": new_key})
    assert (await rotated.decode(sealed_before))[0].data == b'{"phone":"13800138000"}'
    sealed_after = await rotated.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
    assert sealed_after[0].metadata[KEY_ID] == b"2026-07"

    forgot = EncryptionCodec("2026-07", {"2026-07": new_key})
    with pytest.raises(UnknownPayloadKey, match="2026-01"):
        await forgot.decode(sealed_before)
    relabelled = Payload(metadata={"encoding": ENCODING, KEY_ID: b"2026-07"}, data=sealed_before[0].data)
    with pytest.raises(UnknownPayloadKey):  # the key id is bound to the ciphertext
        await rotated.decode([relabelled])


def test_payload_keys_from_settings(tmp_path):
    master = Settings(_env_file=None, data_dir=tmp_path, master_key="m" * 40)
    current, known = master.payload_key_set()
    assert known == {current: keys.derive("m" * 40, keys.PAYLOAD_ENCRYPTION)} and current == keys.key_id(known[current])
    # the master key rotated: payloads of the old one still decrypt
    rotated = Settings(_env_file=None, data_dir=tmp_path, master_key="n" * 40, previous_master_keys=["m" * 40])
    new_current, new_known = rotated.payload_key_set()
    assert new_current != current and current in new_known
    # explicit keys: the id named encrypts, the others decrypt
    explicit = Settings(_env_file=None, data_dir=tmp_path, payload_keys={
        "a": base64.b64encode(b"a" * 32).decode(), "b": base64.b64encode(b"b" * 32).decode()}, payload_key_id="a")
    assert payload_codec(explicit).key_id == "a"
    with pytest.raises(ValueError, match="32 bytes"):
        Settings(_env_file=None, data_dir=tmp_path, payload_keys={"x": base64.b64encode(b"short").decode()}
                 ).payload_key_set()
