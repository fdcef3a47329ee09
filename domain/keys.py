"""One key per purpose. Each is its own setting, or derived from the master key with HKDF
(RFC 5869, SHA-256) and a purpose label, so rotating one purpose never breaks another.

A `KeyRing` is the key in force plus the previous ones kept for a grace period: new values are
made with `current`; a stored value (a pickup code's hash, a fingerprint, an identity hash) is
recognised under any key of `all`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKENS = "tokens"
PICKUP_CODES = "pickup-codes"
RISK_FINGERPRINTS = "risk-fingerprints"
IDENTITY_HASHES = "identity-hashes"
PAYLOAD_ENCRYPTION = "payload-encryption"
PURPOSES = (TOKENS, PICKUP_CODES, RISK_FINGERPRINTS, IDENTITY_HASHES, PAYLOAD_ENCRYPTION)


def derive(master: str, purpose: str, length: int = 32) -> bytes:
    """The purpose's key from the master key: HKDF-SHA256, info `chuchuang/<purpose>`."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown key purpose {purpose!r}")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=f"chuchuang/{purpose}".encode()).derive(master.encode())


def key_id(key: bytes) -> str:
    """A short public name for a key (never the key): what an encrypted payload records."""
    return hashlib.sha256(b"chuchuang key id:" + key).hexdigest()[:12]


@dataclass(frozen=True)
class KeyRing:
    current: str
    previous: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return (self.current, *(k for k in self.previous if k != self.current))
