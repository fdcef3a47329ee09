"""Identities and keys the sandbox plays with: a merchant, its WeChat Pay platform, an
official account and a 快递100 account.

Generated once per data directory and reused, so the sandbox and every client (worker, API,
any WeChat Pay SDK) agree on them. `credentials.json` is the single source of truth and holds
everything, private keys included (it is a sandbox); the `.pem` files next to it are exports for
tools that want key files.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import string
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, Field

CREDENTIALS_FILE = "credentials.json"
# What a real partner hands a merchant (ids, secrets, the merchant's key and the platform's public
# key), in one file our clients read: they share this file with the sandbox, never its code.
MERCHANT_KIT_FILE = "merchant.json"
_PEM_EXPORTS = {
    "merchant_private_key.pem": "merchant_private_key_pem",
    "platform_public_key.pem": "platform_public_key_pem",
    "platform_private_key.pem": "platform_private_key_pem",
}


class SandboxCredentials(BaseModel):
    mchid: str
    appid: str
    app_secret: str
    apiv3_key: str = Field(min_length=32, max_length=32)
    merchant_private_key_pem: str
    merchant_cert_serial_no: str = Field(pattern=r"^[0-9A-F]{40}$")
    platform_private_key_pem: str
    platform_public_key_pem: str
    platform_public_key_id: str = Field(pattern=r"^PUB_KEY_ID_[0-9A-Fa-f]+$")
    logistics_key: str
    logistics_customer: str

    @property
    def merchant_public_key_pem(self) -> str:
        return _public_pem(load_private_key(self.merchant_private_key_pem))

    # The WeChat Channels shop (视频号小店) is a second WeChat app with its own appid/secret and
    # push token/EncodingAESKey. They are derived from the stored secrets rather than stored, so
    # credential files written before Channels existed stay valid and every process agrees.
    def _derive(self, label: str, n: int, alphabet: str = "0123456789abcdef") -> str:
        digest = hashlib.sha256(f"{label}:{self.app_secret}:{self.apiv3_key}".encode()).digest()
        while len(digest) < n:
            digest += hashlib.sha256(digest).digest()
        return "".join(alphabet[b % len(alphabet)] for b in digest[:n])

    def merchant_kit(self) -> dict[str, str]:
        return {
            "mchid": self.mchid, "appid": self.appid, "app_secret": self.app_secret,
            "apiv3_key": self.apiv3_key, "merchant_private_key_pem": self.merchant_private_key_pem,
            "merchant_cert_serial_no": self.merchant_cert_serial_no,
            "platform_public_key_pem": self.platform_public_key_pem,
            "platform_public_key_id": self.platform_public_key_id,
            "logistics_key": self.logistics_key, "logistics_customer": self.logistics_customer,
            "channels_appid": self.channels_appid, "channels_secret": self.channels_secret,
            "channels_push_token": self.channels_push_token,
            "channels_encoding_aes_key": self.channels_encoding_aes_key,
            "miniprogram_appid": self.miniprogram_appid, "miniprogram_secret": self.miniprogram_secret,
        }

    # The mini program (小程序) is a third WeChat app of the same open-platform account: its own
    # appid/secret and openids, the same unionid for the same person. Derived like Channels'.
    @property
    def miniprogram_appid(self) -> str:
        return "wx" + self._derive("miniprogram-appid", 16)

    @property
    def miniprogram_secret(self) -> str:
        return self._derive("miniprogram-secret", 32)

    @property
    def channels_appid(self) -> str:
        return "wx" + self._derive("channels-appid", 16)

    @property
    def channels_secret(self) -> str:
        return self._derive("channels-secret", 32)

    @property
    def channels_push_token(self) -> str:
        return self._derive("channels-token", 32, string.ascii_letters + string.digits)

    @property
    def channels_encoding_aes_key(self) -> str:
        return self._derive("channels-aes", 43, string.ascii_letters + string.digits)


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    # These keys are ours (generated below); skipping cryptography's slow consistency check
    # keeps sandbox start-up and every test fixture fast.
    return serialization.load_pem_private_key(pem.encode(), None, unsafe_skip_rsa_key_validation=True)


def _private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _public_pem(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def generate() -> SandboxCredentials:
    merchant = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    platform = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    alnum = string.ascii_letters + string.digits
    return SandboxCredentials(
        mchid="1" + _random(string.digits, 9),
        appid="wx" + _random("0123456789abcdef", 16),
        app_secret=secrets.token_hex(16),
        apiv3_key=_random(alnum, 32),
        merchant_private_key_pem=_private_pem(merchant),
        merchant_cert_serial_no=secrets.token_hex(20).upper(),
        platform_private_key_pem=_private_pem(platform),
        platform_public_key_pem=_public_pem(platform),
        platform_public_key_id="PUB_KEY_ID_01" + _random(string.digits, 26),
        logistics_key=_random(alnum, 16),
        logistics_customer=secrets.token_hex(16).upper(),
    )


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_or_create(directory: Path) -> SandboxCredentials:
    """The credentials under `directory`, generating them on first use.

    `make dev` starts the sandbox, worker and API at once, so creation must be race-free:
    each process writes a candidate to a temp file and hard-links it into place, which fails
    if another process got there first; the losers then read the winner's file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CREDENTIALS_FILE
    if not target.exists():
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".credentials.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(generate().model_dump_json(indent=2))
            os.chmod(tmp, 0o600)
            try:
                os.link(tmp, target)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    creds = SandboxCredentials.model_validate(json.loads(target.read_text()))
    exports = {filename: getattr(creds, field) for filename, field in _PEM_EXPORTS.items()}
    exports[MERCHANT_KIT_FILE] = json.dumps(creds.merchant_kit(), indent=2)
    for filename, text in exports.items():
        path = directory / filename
        if not path.exists() or path.read_text() != text:
            _write_atomically(path, text)
    return creds
