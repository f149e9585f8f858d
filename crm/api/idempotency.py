"""Idempotent POSTs: the `Idempotency-Key` header.

A POST carrying `Idempotency-Key: <key>` runs once per (caller, key). A repeat with the same
method, path and body gets the first response again (status and body, plus the header
`Idempotent-Replayed: true`); a repeat with a different request gets 409. Keys are kept 24 hours
(a beat job prunes them); after that a key may be used again.

Concurrency: the key's row is inserted first, under a unique constraint, in the same transaction
that runs the request and stores its response. A concurrent repeat blocks on that insert until
the first commits, then locks the row and replays it; if the first failed with a server error
its transaction is rolled back, the row disappears, and the repeat runs the request itself.
Error responses (4xx) are stored and replayed like successes: the outcome of a key is fixed.
"""

import functools
import hashlib
import json
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from crm.core.api import Conflict, PartnerKey
from crm.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_MAX_LENGTH = 255
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    name=HEADER,
    type=OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description="Any unique string (e.g. a UUID) of at most 255 characters. A retry with the same key and "
    "body returns the first response; the same key with another body gets 409. Kept 24 hours.",
)


def idempotent(handler):
    """Decorate an APIView's `post` to honour the Idempotency-Key header."""

    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        key = key.strip()
        if not key or len(key) > KEY_MAX_LENGTH:
            raise exceptions.ValidationError(
                {HEADER: [_("Give a non-empty key of at most %(max)d characters.") % {"max": KEY_MAX_LENGTH}]}
            )
        owner = request.auth.owner if isinstance(request.auth, PartnerKey) else f"u:{request.user.pk}"
        fingerprint = request_fingerprint(request)
        with transaction.atomic():
            record = _claim(owner=owner, key=key, request=request, fingerprint=fingerprint)
            if record.is_complete:
                if record.request_hash != fingerprint:
                    raise Conflict(_("This Idempotency-Key was already used with a different request."))
                body = json.loads(record.response_body) if record.response_body else None
                return Response(body, status=record.response_status, headers={REPLAYED_HEADER: "true"})
            try:
                with transaction.atomic():
                    response = handler(view, request, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - an error response is an outcome to store too
                response = view.handle_exception(exc)  # re-raises what is not an API error (a 500)
            if response.status_code >= 500:
                transaction.set_rollback(True)
                return response
            text = "" if response.data is None else JSONRenderer().render(response.data).decode()
            response.data = json.loads(text) if text else None
            record.response_status = response.status_code
            record.response_body = text
            record.save(update_fields=["response_status", "response_body"])
        return response

    return wrapper


def request_fingerprint(request) -> str:
    """Hash of what makes two requests "the same": method, path with query, and the JSON body."""
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    text = f"{request.method}\n{request.get_full_path()}\n{body}"
    return hashlib.sha256(text.encode()).hexdigest()


def _claim(*, owner: str, key: str, request, fingerprint: str) -> IdempotencyKey:
    """Insert the key's row (or wait for the transaction that did) and lock it."""
    IdempotencyKey.objects.bulk_create(
        [
            IdempotencyKey(
                owner=owner,
                key=key,
                request_hash=fingerprint,
                method=request.method,
                path=request.path[:255],
            )
        ],
        ignore_conflicts=True,
    )
    record = IdempotencyKey.objects.select_for_update().get(owner=owner, key=key)
    if record.is_complete and record.created_at <= timezone.now() - IDEMPOTENCY_KEY_TTL:
        # Expired but not pruned yet: the key is free again.
        record.request_hash = fingerprint
        record.method = request.method
        record.path = request.path[:255]
        record.response_status = None
        record.response_body = ""
        record.created_at = timezone.now()
        record.save(update_fields=["request_hash", "method", "path", "response_status", "response_body", "created_at"])
    return record
