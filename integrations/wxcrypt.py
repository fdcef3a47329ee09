"""WeChat message-push "security mode" (安全模式) crypto, as WeChat's WXBizMsgCrypt does it.

Used by WeChat Channels shop event pushes (and official-account / mini-program pushes):
  * key = base64decode(EncodingAESKey + "="), 32 bytes; AES-256-CBC with iv = key[:16];
  * plaintext = 16 random bytes + 4-byte big-endian length + message + appid,
    PKCS#7-padded to a multiple of 32 bytes;
  * msg_signature = sha1(sorted([token, timestamp, nonce, Encrypt]) joined).
The push arrives as `POST url?signature=&timestamp=&nonce=&encrypt_type=aes&msg_signature=` with
body `{"ToUserName": ..., "Encrypt": ...}` (JSON data format).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32


class WxCryptError(Exception):
    """A push whose signature, padding or appid does not check out."""


def _key(encoding_aes_key: str) -> bytes:
    key = base64.b64decode(encoding_aes_key + "=")
    if len(key) != 32:
        raise ValueError("EncodingAESKey must be 43 characters (32 bytes base64 without padding)")
    return key


def sha1_signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def encrypt(encoding_aes_key: str, appid: str, message: str, *, random16: bytes | None = None) -> str:
    key = _key(encoding_aes_key)
    raw = message.encode()
    text = (random16 or os.urandom(16)) + struct.pack(">I", len(raw)) + raw + appid.encode()
    pad = BLOCK - len(text) % BLOCK
    text += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(text) + encryptor.finalize()).decode()


def decrypt(encoding_aes_key: str, appid: str, encrypted: str) -> str:
    key = _key(encoding_aes_key)
    try:
        data = base64.b64decode(encrypted, validate=True)
        decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        text = decryptor.update(data) + decryptor.finalize()
    except Exception as e:
        raise WxCryptError(f"cannot decrypt: {e}") from None
    pad = text[-1] if text else 0
    if not 1 <= pad <= BLOCK or text[-pad:] != bytes([pad]) * pad:
        raise WxCryptError("bad padding")
    text = text[:-pad]
    (length,) = struct.unpack(">I", text[16:20])
    message, from_appid = text[20:20 + length], text[20 + length:]
    if from_appid.decode(errors="replace") != appid:
        raise WxCryptError("appid does not match")
    return message.decode()


def verify_and_decrypt(
    *, token: str, encoding_aes_key: str, appid: str, timestamp: str, nonce: str, msg_signature: str, encrypted: str
) -> str:
    expected = sha1_signature(token, timestamp, nonce, encrypted)
    if not hmac.compare_digest(expected, msg_signature or ""):
        raise WxCryptError("msg_signature does not match")
    return decrypt(encoding_aes_key, appid, encrypted)
