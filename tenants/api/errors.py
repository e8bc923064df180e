"""One error shape for the whole API: {"detail": str, "code": str, "fields": {...}}."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class ApplicationError(exceptions.APIException):
    """A domain rule refused the request (e.g. removing the last owner)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"

    def __init__(self, message: str, *, code: str = "conflict", status_code: int | None = None):
        super().__init__(detail=message, code=code)
        if status_code is not None:
            self.status_code = status_code


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body is too large."
    default_code = "payload_too_large"


def _flatten(detail) -> dict:
    if isinstance(detail, dict):
        return {key: _flatten_list(value) for key, value in detail.items()}
    return {}


def _flatten_list(value):
    if isinstance(value, dict):
        return _flatten(value)
    if isinstance(value, list):
        if value and all(isinstance(item, dict) for item in value):
            return [_flatten(item) for item in value]
        return [str(item) for item in value]
    return [str(value)]


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )

    response = drf_exception_handler(exc, context)
    if response is None:
        view = context.get("view")
        logger.exception("unhandled API error view=%s", type(view).__name__ if view else "?")
        return Response(
            {"detail": "Internal server error.", "code": "server_error", "fields": {}},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail) if isinstance(exc.detail, dict) else {}
        non_field = fields.pop("non_field_errors", None)
        if isinstance(exc.detail, list):
            message = "; ".join(str(item) for item in exc.detail)
        elif non_field:
            message = "; ".join(non_field)
        else:
            message = "Invalid input."
        response.data = {"detail": message, "code": "invalid", "fields": fields}
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        response.data = {
            "detail": str(detail),
            "code": codes if isinstance(codes, str) else "error",
            "fields": {},
        }
    return response


def not_found_view(request, exception=None):
    return JsonResponse({"detail": "Not found.", "code": "not_found", "fields": {}}, status=404)


def server_error_view(request):
    return JsonResponse(
        {"detail": "Internal server error.", "code": "server_error", "fields": {}}, status=500
    )
