"""How activities report a business refusal: a non-retryable ApplicationError whose type is
the machine-readable code the API and workflows act on."""

from temporalio.exceptions import ApplicationError


def business_error(code: str, message: str) -> ApplicationError:
    return ApplicationError(message, type=code, non_retryable=True)
