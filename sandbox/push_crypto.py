"""The sender's half of WeChat's message-push security mode (安全模式), as WeChat's servers do it
for Channels shop pushes: AES-256-CBC over random(16) + length + message + appid, PKCS#7 to 32
bytes, and SHA-1 signatures over the sorted parts. The sandbox keeps its own copy: it plays the
partner, and shares no code with the clients it tests."""

from __future__ import annotations

import base64
import hashlib
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.padding import PKCS7


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def seal(encoding_aes_key: str, appid: str, message: str) -> str:
    key = base64.b64decode(encoding_aes_key + "=")
    body = message.encode()
    padder = PKCS7(256).padder()
    plain = padder.update(os.urandom(16) + struct.pack(">I", len(body)) + body + appid.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()
