"""Payment notifications an attacker could send: well-formed, but not from WeChat Pay."""

from __future__ import annotations

import json
import secrets
import time

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from sandbox.signing import SCHEMA, aes_gcm_encrypt, platform_headers, rsa_sign


def _body(creds, order_no: str, amount_fen: int) -> str:
    transaction = {"appid": creds.appid, "mchid": creds.mchid, "out_trade_no": order_no,
                   "transaction_id": "4200000000" + secrets.token_hex(6), "trade_type": "JSAPI",
                   "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
                   "amount": {"total": amount_fen, "payer_total": amount_fen, "currency": "CNY",
                              "payer_currency": "CNY"}, "payer": {"openid": "oFORGED"}}
    resource = aes_gcm_encrypt(creds.apiv3_key, json.dumps(transaction), "transaction")
    return json.dumps({"id": secrets.token_hex(8), "event_type": "TRANSACTION.SUCCESS",
                       "resource_type": "encrypt-resource", "summary": "支付成功",
                       "resource": {**resource, "original_type": "transaction"}})


def forged_notification(creds, order_no: str, amount_fen: int, variant: str) -> tuple[dict, bytes]:
    body = _body(creds, order_no, amount_fen)
    platform_key = load_pem_private_key(creds.platform_private_key_pem.encode(), password=None)
    if variant == "wrong_key":
        impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        headers = platform_headers(impostor, creds.platform_public_key_id, body)
    elif variant == "tampered_body":
        headers = platform_headers(platform_key, creds.platform_public_key_id, body)
        body = body[:-1] + ', "amount_hint": 1}'  # any change after signing
    elif variant == "stale_timestamp":
        timestamp, nonce = str(int(time.time()) - 3600), secrets.token_hex(16)
        headers = {"Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce,
                   "Wechatpay-Signature": rsa_sign(platform_key, f"{timestamp}\n{nonce}\n{body}\n"),
                   "Wechatpay-Serial": creds.platform_public_key_id, "Wechatpay-Signature-Type": SCHEMA}
    elif variant == "unsigned":
        headers = {}
    else:
        raise ValueError(variant)
    return headers | {"Content-Type": "application/json"}, body.encode()
