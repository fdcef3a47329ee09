"""Connecting to Temporal, and the search attributes operators filter by in Temporal UI."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from domain.search_attributes import OURS
from integrations.payload_codec import EncryptionCodec, encrypted_converter
from settings import Settings

_INDEXED_TYPES = {
    SearchAttributeIndexedValueType.KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    SearchAttributeIndexedValueType.KEYWORD_LIST: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}
SEARCH_ATTRIBUTES = {key.name: _INDEXED_TYPES[key.indexed_value_type] for key in OURS}


def payload_codec(settings: Settings) -> EncryptionCodec:
    """The codec sealing every payload with the settings' payload keys (README "Keys and rotation")."""
    current, known = settings.payload_key_set()
    return EncryptionCodec(current, known)


def data_converter(settings: Settings) -> DataConverter:
    """The one data converter of the worker, the API, the CLI and the tests: pydantic models,
    payloads encrypted by `payload_codec`."""
    return encrypted_converter(payload_codec(settings))


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.resolved_temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
    )


async def ensure_search_attributes(client: Client) -> None:
    """Register whichever of our search attributes the namespace lacks (idempotent)."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace))
        known = set(existing.custom_attributes) | set(existing.system_attributes)
    except RPCError as err:  # Temporal's time-skipping test server cannot list them
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    missing = {k: v for k, v in SEARCH_ATTRIBUTES.items() if k not in known}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing))
