"""The one error shape of the API, and the exception handler that produces it."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error

from crm.core.exceptions import ApplicationError

# ----------------------------------------------------------------------------------------------
# Errors


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "too_large"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = _("The request conflicts with an earlier one.")
    default_code = "conflict"


class ErrorSerializer(serializers.Serializer):
    """The body of every error response."""

    code = serializers.CharField(
        help_text="Machine-readable: invalid, not_authenticated, "
        "authentication_failed, permission_denied, not_found, throttled, conflict, "
        "rejected, parse_error, …"
    )
    message = serializers.CharField(help_text="Human-readable, in the language of Accept-Language.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages per invalid field; nested fields are dotted paths such as `events.3.kind`.",
    )
    extra = serializers.DictField(help_text="Details of a refusal, e.g. the balance that was short.")


ERROR_RESPONSES = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input (see `fields`)."),
    401: OpenApiResponse(ErrorSerializer, description="Missing, unknown, revoked or expired API key."),
    403: OpenApiResponse(ErrorSerializer, description="The key lacks the scope this endpoint needs."),
    429: OpenApiResponse(ErrorSerializer, description="Too many requests; see Retry-After."),
}
NOT_FOUND_RESPONSE = {404: OpenApiResponse(ErrorSerializer, description="No such object.")}
WRITE_ERROR_RESPONSES = {
    409: OpenApiResponse(ErrorSerializer, description="Idempotency-Key reused with a different request."),
    422: OpenApiResponse(ErrorSerializer, description="Refused by a business rule (see `message`, `extra`)."),
}


def error_responses(*, not_found: bool = False, write: bool = False) -> dict:
    responses = dict(ERROR_RESPONSES)
    if not_found:
        responses.update(NOT_FOUND_RESPONSE)
    if write:
        responses.update(WRITE_ERROR_RESPONSES)
    return responses


def flatten_errors(detail, path: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"a.b.0.c": ["message", …]}."""
    fields: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for name, value in detail.items():
            fields.update(flatten_errors(value, f"{path}.{name}" if path else str(name)))
    elif isinstance(detail, list) and detail and all(not isinstance(item, dict | list) for item in detail):
        fields[path or "non_field_errors"] = [str(item) for item in detail]
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            if value:
                fields.update(flatten_errors(value, f"{path}.{index}" if path else str(index)))
    elif detail:
        fields[path or "non_field_errors"] = [str(detail)]
    return fields


def _error_code(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(exc, exceptions.ValidationError):
        return "invalid"
    if isinstance(codes, str):
        return codes
    return exc.default_code


def exception_handler(exc, context) -> Response | None:
    """Every error of the API in one shape; anything unexpected stays a 500 (and is logged)."""
    if isinstance(exc, ApplicationError):
        body = {"code": "rejected", "message": str(exc.message), "fields": {}, "extra": exc.extra}
        return Response(body, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    from rest_framework.views import exception_handler as drf_exception_handler  # imports settings: not at load

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        message = _("Invalid input.")
        if list(fields) == ["non_field_errors"]:
            message = fields["non_field_errors"][0]
    else:
        fields = {}
        message = exc.detail if isinstance(exc.detail, str) else str(exc.default_detail)
    extra = {}
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        extra["retry_after"] = int(exc.wait + 0.999)
    response.data = {"code": _error_code(exc), "message": str(message), "fields": fields, "extra": extra}
    return response
