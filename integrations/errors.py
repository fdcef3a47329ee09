"""How a partner call failed, in the two kinds callers must tell apart.

Activities retry `PartnerUnavailable` (Temporal's retry policy) and turn `PartnerRejected`
into a non-retryable business failure: asking again would get the same answer.
"""

from __future__ import annotations


class PartnerError(Exception):
    """Base for failures talking to WeChat Pay, WeChat OAuth or the logistics provider."""


class PartnerUnavailable(PartnerError):
    """Retryable: 5xx, 429, timeout, connection failure, or an unverifiable response."""


class PartnerRejected(PartnerError):
    """Non-retryable: the partner understood the request and said no (4xx / errcode)."""

    def __init__(self, code: str, message: str, *, status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
