"""WeChat Pay API v3 cryptography, seen from the platform's side.

Requests are signed by the merchant over `METHOD\\nURL\\ntimestamp\\nnonce\\nbody\\n`; responses
and notifications are signed by the platform over `timestamp\\nnonce\\nbody\\n`; notification
resources are AEAD_AES_256_GCM-encrypted with the merchant's APIv3 key.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
MAX_CLOCK_SKEW_SECONDS = 300
_PAIR = re.compile(r'(\w+)="([^"]*)"')


class SignError(Exception):
    """The request's Authorization does not check out; the message says why."""


def rsa_sign(key: RSAPrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), PKCS1v15(), SHA256())).decode()


def rsa_verify(key: RSAPublicKey, message: str, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message.encode(), PKCS1v15(), SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_authorization(
    header: str | None,
    *,
    method: str,
    url: str,
    body: str,
    mchid: str,
    serial_no: str,
    merchant_key: RSAPublicKey,
) -> str:
    """Check a request's `Authorization` header; returns the caller's mchid or raises SignError."""
    if not header:
        raise SignError("Authorization header is missing")
    schema, _, rest = header.strip().partition(" ")
    if schema != SCHEMA:
        raise SignError(f"unsupported authorization schema {schema!r}")
    fields = dict(_PAIR.findall(rest))
    missing = {"mchid", "nonce_str", "signature", "timestamp", "serial_no"} - fields.keys()
    if missing:
        raise SignError(f"Authorization lacks {', '.join(sorted(missing))}")
    if fields["mchid"] != mchid:
        raise SignError("mchid in Authorization is unknown")
    if fields["serial_no"] != serial_no:
        raise SignError("merchant certificate serial_no does not match")
    if not fields["timestamp"].isdigit() or abs(time.time() - int(fields["timestamp"])) > MAX_CLOCK_SKEW_SECONDS:
        raise SignError("timestamp is missing or outside the allowed window")
    message = f"{method}\n{url}\n{fields['timestamp']}\n{fields['nonce_str']}\n{body}\n"
    if not rsa_verify(merchant_key, message, fields["signature"]):
        raise SignError("signature does not verify with the merchant certificate")
    return fields["mchid"]


def platform_headers(key: RSAPrivateKey, key_id: str, body: str) -> dict[str, str]:
    """Wechatpay-* headers proving `body` came from the platform (responses and notifications)."""
    timestamp = str(int(time.time()))
    nonce = secrets.token_hex(16).upper()
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": rsa_sign(key, f"{timestamp}\n{nonce}\n{body}\n"),
        "Wechatpay-Serial": key_id,
        "Wechatpay-Signature-Type": SCHEMA,
        "Request-ID": uuid.uuid4().hex,
    }


def aes_gcm_encrypt(apiv3_key: str, plaintext: str, associated_data: str) -> dict[str, str]:
    nonce = secrets.token_hex(6)  # 12 ASCII characters, used as the 12-byte GCM nonce
    ciphertext = AESGCM(apiv3_key.encode()).encrypt(
        nonce.encode(), plaintext.encode(), associated_data.encode()
    )
    return {
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "nonce": nonce,
        "associated_data": associated_data,
    }
