"""Temporal payload encryption: every payload our clients and workers write (workflow inputs,
activity arguments and results, signals, updates, queries, memos) is sealed with AES-256-GCM
before it leaves the process, so Temporal's database and anyone reading its history without the
key see no buyer name, phone, address or openid. After Temporal's own encryption sample
(samples-python/encryption): the encrypted payload's metadata names the encoding
(`binary/encrypted`) and the key id; several keys are known at once so a key can be rotated
(new payloads with the newest, old ones decrypt with whichever key made them), and payloads
without our encoding (histories from before encryption) pass through untouched."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


class UnknownPayloadKey(ValueError):
    pass


class EncryptionCodec(PayloadCodec):
    def __init__(self, current_key_id: str, keys: Mapping[str, bytes]):
        super().__init__()
        if current_key_id not in keys:
            raise ValueError(f"payload key {current_key_id!r} is not among the known keys")
        self.key_id = current_key_id
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        # the key id is bound to the ciphertext as associated data: a payload cannot be relabelled
        sealed = self._ciphers[self.key_id].encrypt(nonce, payload.SerializeToString(), self.key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: self.key_id.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding", b"") != ENCODING:
            return payload  # not ours: written before encryption, passes through
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownPayloadKey(f"payload encrypted with unknown key id {key_id!r}: add it to PAYLOAD_KEYS "
                                    "(or PREVIOUS_MASTER_KEYS) to read it")
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], key_id.encode())
        except InvalidTag as err:
            raise UnknownPayloadKey(f"payload with key id {key_id!r} does not decrypt with that key") from err
        return Payload.FromString(plain)


def encryption_codec(current_key_id: str, keys: Mapping[str, bytes]) -> EncryptionCodec:
    return EncryptionCodec(current_key_id, keys)


def encrypted_converter(codec: PayloadCodec) -> DataConverter:
    """Pydantic's data converter (our workflows' models) with the codec on the wire."""
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)
