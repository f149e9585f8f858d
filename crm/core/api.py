"""Building blocks of the partner REST API: authentication by API key, scopes, throttling per
key, cursor pagination and the one error shape every endpoint returns.

The error shape (docs/API.md, component `Error` in the OpenAPI schema)::

    {"code": "invalid", "message": "Invalid input.", "fields": {"phone": ["…"], "events.3.kind": ["…"]},
     "extra": {}}

`fields` maps the path of each invalid field to its messages (empty when the error is not about
fields); `extra` carries machine-readable details of a refusal (e.g. the balance that was short).
"""

import json
import logging
import math
import pickle
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.throttling import BaseThrottle
from rest_framework_api_key.permissions import KeyParser

from crm.core.exceptions import ApplicationError

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Authentication


@dataclass(frozen=True, slots=True)
class PartnerKey:
    """What a request authenticated by an API key carries as `request.auth`.

    A plain snapshot of the key and its partner, cached so that authenticating a request costs
    one cache read instead of a database query; saving a key or a partner drops the snapshot.
    """

    key_id: str
    prefix: str
    hashed_key: str
    name: str
    partner_id: int
    partner_name: str
    scopes: frozenset[str]
    rate_limit_per_minute: int
    usable: bool
    expires_at: datetime | None

    @property
    def owner(self) -> str:
        return f"p:{self.partner_id}"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @classmethod
    def load(cls, prefix: str) -> "PartnerKey | None":
        from crm.models import PartnerAPIKey

        key = PartnerAPIKey.objects.select_related("partner").filter(prefix=prefix).first()
        if key is None:
            return None
        return cls(
            key_id=key.pk,
            prefix=key.prefix,
            hashed_key=key.hashed_key,
            name=key.name,
            partner_id=key.partner_id,
            partner_name=key.partner.name,
            scopes=frozenset(key.scopes or ()),
            rate_limit_per_minute=key.partner.rate_limit_per_minute,
            usable=not key.revoked and key.partner.is_active,
            expires_at=key.expiry_date,
        )


_MISSING = "missing"
THROTTLE_WINDOW_SECONDS = 60


class _KeyStore:
    """Where key snapshots and throttle counters live: Redis when REDIS_URL is set, else the cache.

    Every request needs its key's snapshot and a count in its throttle window. With Redis:
    - a snapshot read from Redis (or the database) is also kept in this process for
      `local_seconds`; saving a key or partner drops it here and in Redis, so a revoked key is
      refused at once by the process that revoked it and within `local_seconds` by the others;
    - requests are counted in this process and added to the shared Redis counter every
      `sync_every` requests, or on every request once the count nears the partner's limit, so
      far below the limit a request costs no round trip and near it the count is exact;
    - a round trip is one pipeline (GET snapshot, INCRBY, EXPIRE): Django's RedisCache builds a
      client per call and asks EXISTS before INCR, three times the cost on every request.
    Without Redis (the embedded default, one process) the cache is used directly.
    """

    snapshot_seconds = 300
    local_seconds = 5
    sync_every = 20

    def __init__(self):
        self._redis = None
        self._lock = threading.Lock()
        self._local: dict[str, tuple[float, object]] = {}
        self._counts: dict[str, list[int]] = {}  # prefix -> [counted here, not yet added; last shared total]
        self._window: int | None = None

    def redis(self):
        if self._redis is None and settings.REDIS_URL:
            import redis

            self._redis = redis.Redis.from_url(settings.REDIS_URL)
        return self._redis

    @staticmethod
    def snapshot_key(prefix: str) -> str:
        # v1: bump when PartnerKey changes, so that no process reads another version's pickle.
        return f"crm:api-key:v1:{prefix}"

    @staticmethod
    def counter_key(prefix: str, window: int) -> str:
        return f"crm:throttle:{prefix}:{window}"

    def fetch(self, prefix: str, window: int) -> tuple[object, int]:
        """(the snapshot, _MISSING or None when unknown; this request's number in the window)."""
        client = self.redis()
        counter = self.counter_key(prefix, window)
        if client is None:
            return cache.get(self.snapshot_key(prefix)), _cache_incr(counter, THROTTLE_WINDOW_SECONDS + 5)
        now = time.monotonic()
        with self._lock:
            if window != self._window:
                self._counts.clear()
                self._window = window
            counts = self._counts.setdefault(prefix, [0, 0])
            counts[0] += 1
            memo = self._local.get(prefix)
            snapshot = memo[1] if memo is not None and memo[0] > now else None
            if snapshot is not None:
                limit = snapshot.rate_limit_per_minute if isinstance(snapshot, PartnerKey) else 0
                estimate = counts[1] + counts[0]
                if counts[0] < self.sync_every and (not limit or estimate * 5 < limit * 4):
                    return snapshot, estimate
            pending, counts[0] = counts[0], 0
        pipeline = client.pipeline(transaction=False)
        if snapshot is None:
            pipeline.get(self.snapshot_key(prefix))
        pipeline.incrby(counter, pending)
        pipeline.expire(counter, THROTTLE_WINDOW_SECONDS + 5, nx=True)
        replies = pipeline.execute()
        total = int(replies[-2])
        with self._lock:
            counts = self._counts.setdefault(prefix, [0, 0])
            counts[1] = max(counts[1], total)
        if snapshot is None and replies[0] is not None:
            try:
                snapshot = pickle.loads(replies[0])
            except Exception:  # noqa: BLE001 - an unreadable snapshot is reloaded from the database
                logger.warning("unreadable API key snapshot for prefix %s", prefix)
                snapshot = None
            else:
                self._remember(prefix, snapshot)
        return snapshot, total

    def _remember(self, prefix: str, snapshot) -> None:
        with self._lock:
            if len(self._local) > 10_000:  # unknown prefixes must not grow it without bound
                self._local.clear()
            self._local[prefix] = (time.monotonic() + self.local_seconds, snapshot)

    def put(self, prefix: str, snapshot) -> None:
        client = self.redis()
        if client is None:
            cache.set(self.snapshot_key(prefix), snapshot, self.snapshot_seconds)
        else:
            client.set(self.snapshot_key(prefix), pickle.dumps(snapshot), ex=self.snapshot_seconds)
            self._remember(prefix, snapshot)

    def forget(self, prefix: str) -> None:
        client = self.redis()
        if client is None:
            cache.delete(self.snapshot_key(prefix))
        else:
            with self._lock:
                self._local.pop(prefix, None)
            client.delete(self.snapshot_key(prefix))

    def clear_local(self) -> None:
        """Forget what this process holds (tests flush Redis between cases)."""
        with self._lock:
            self._local.clear()
            self._counts.clear()


key_store = _KeyStore()


def partner_key_get(prefix: str, *, window: int) -> tuple[PartnerKey | None, int]:
    """The snapshot of the key with this prefix (None when there is no such key), and the
    request's number in the key's current throttle window."""
    found, count = key_store.fetch(prefix, window)
    if found is None:
        found = PartnerKey.load(prefix) or _MISSING
        key_store.put(prefix, found)
    return (None if found == _MISSING else found), count


def partner_key_forget(prefix: str) -> None:
    key_store.forget(prefix)


class PartnerAPIKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <prefix>.<secret>`: a partner's key, checked against its hash.

    A request without the header is left to the next class (the staff session); a header with
    an unknown, revoked or expired key, or one of an inactive partner, is refused with 401.
    """

    keyword = "Api-Key"
    key_parser = KeyParser()

    def authenticate(self, request):
        raw = self.key_parser.get(request)
        if raw is None:
            return None
        from crm.models import PartnerAPIKey

        prefix, dot, _secret = raw.strip().partition(".")
        key = None
        if dot and prefix and len(prefix) <= 8 and prefix.isalnum():
            window = int(time.time() // THROTTLE_WINDOW_SECONDS)
            key, count = partner_key_get(prefix, window=window)
            request.crm_throttle = (window, count)  # read by PartnerKeyThrottle
        if key is None or not PartnerAPIKey.objects.key_generator.verify(raw.strip(), key.hashed_key):
            raise exceptions.AuthenticationFailed(_("Unknown API key."))
        if not key.usable:
            raise exceptions.AuthenticationFailed(_("This API key has been revoked."))
        if key.expires_at is not None and key.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed(_("This API key has expired."))
        return (_PartnerUser(key), key)

    def authenticate_header(self, request) -> str:
        return self.keyword


class _PartnerUser:
    """`request.user` of a partner's request: not a staff account, never a superuser."""

    is_active = True
    is_staff = False
    is_superuser = False
    is_anonymous = False
    is_authenticated = True
    pk = id = None

    def __init__(self, key: PartnerKey):
        self.partner_id = key.partner_id
        self.username = f"partner:{key.partner_name}"

    def __str__(self) -> str:
        return self.username

    def has_perm(self, perm, obj=None) -> bool:
        return False


class PartnerAPIKeyScheme(OpenApiAuthenticationExtension):
    target_class = PartnerAPIKeyAuthentication
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Authorization: Api-Key <prefix>.<secret>` (a partner's key, see docs/API.md).",
        }


# ----------------------------------------------------------------------------------------------
# Authorization

# What a staff member needs, in Django permissions, to use an endpoint of each scope with their
# session. An empty list means superusers only.
STAFF_PERMISSIONS_BY_SCOPE: dict[str, list[str]] = {
    "members:read": ["members.view_member"],
    "members:write": ["members.add_member", "members.change_member"],
    "events:write": ["members.import_events"],
    "points:read": ["loyalty.view_pointsentry"],
    "points:write": ["loyalty.adjust_points"],
    "coupons:write": [],
    "tickets:write": [],
}


def request_has_scope(request, scope: str) -> bool:
    """Whether the caller (a partner's key or a staff session) may do what `scope` covers."""
    if isinstance(request.auth, PartnerKey):
        return request.auth.has_scope(scope)
    user = request.user
    if not (user and user.is_authenticated and user.is_active and user.is_staff):
        return False
    if user.is_superuser:
        return True
    needed = STAFF_PERMISSIONS_BY_SCOPE.get(scope)
    return bool(needed) and user.has_perms(needed)


class HasScope(BasePermission):
    """The view's `required_scope` must be granted to the key (or, for staff, its permissions).

    A view without `required_scope` is closed to partners and open to staff only: safe by default.
    """

    message = _("This API key does not have the scope this endpoint needs.")

    def has_permission(self, request, view) -> bool:
        scope = getattr(view, "required_scope", None)
        if request.auth is None and not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated()
        if scope is None:
            return bool(request.user and request.user.is_staff and request.user.is_active)
        if not request_has_scope(request, scope):
            self.message = _("This endpoint needs the scope %(scope)s.") % {"scope": scope}
            return False
        return True


# ----------------------------------------------------------------------------------------------
# Throttling


class PartnerKeyThrottle(BaseThrottle):
    """A fixed one-minute window per API key, counted in Redis (or the cache without Redis).

    The limit is the partner's `rate_limit_per_minute`, set by staff in the admin; 0 means none.
    Staff sessions are not throttled. Authentication already counted the request, in the same
    round trip that read the key (see _KeyStore), and left its number on the request.
    """

    def allow_request(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, PartnerKey) or not key.rate_limit_per_minute:
            return True
        window, count = request.crm_throttle
        if count <= key.rate_limit_per_minute:
            return True
        self._wait = max(0.0, (window + 1) * THROTTLE_WINDOW_SECONDS - time.time())
        return False

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)


def _cache_incr(key: str, timeout: int) -> int:
    """Increment a counter of the cache that expires `timeout` seconds after it was created."""
    if cache.add(key, 1, timeout):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout)
        return 1


# ----------------------------------------------------------------------------------------------
# Parsing


class StrictJSONParser(JSONParser):
    """JSON, refusing what the database cannot store: NUL characters, unpaired surrogates and
    numbers too large to be finite (1e999). PostgreSQL rejects all three in text and jsonb
    columns; refusing them here makes such input a 400 instead of a 500 deep inside a service.

    In JSON text a NUL or a surrogate can only arrive as a \\u escape, so the decoded objects are
    walked only when the text has such an escape (rare: clients escaping emoji).
    """

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        # Django refuses a larger declared Content-Length first (RequestDataTooBig, a 413 here).
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if limit else stream.read()
        if limit and len(raw) > limit:
            raise PayloadTooLarge()
        try:
            text = raw.decode(encoding)
            data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        if _SUSPECT_ESCAPE.search(text) and not _storable(data):
            raise exceptions.ParseError(_("JSON parse error - text contains a NUL character or an unpaired surrogate."))
        return data


_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:20]} is too large a number")
    return number


def _storable(value) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, str):
            if "\x00" in item or not item.isascii() and not _encodable(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class BoundedDateTimeField(serializers.DateTimeField):
    """A date and time between 1900 and 2200: outside that, time zone arithmetic and the
    databases' ranges stop agreeing, and no member event or profile date is there anyway."""

    default_error_messages = {"range": _("Give a date and time between 1900 and 2200.")}
    low = datetime(1900, 1, 1, tzinfo=UTC)
    high = datetime(2200, 1, 1, tzinfo=UTC)

    def to_internal_value(self, value):
        try:
            moment = super().to_internal_value(value)
        except OverflowError:  # DRF's time zone checks overflow at year 1 and 9999
            self.fail("range")
        if not self.low <= moment < self.high:
            self.fail("range")
        return moment


class BoundedDateField(serializers.DateField):
    default_error_messages = {"range": _("Give a date between 1900 and 2200.")}

    def to_internal_value(self, value):
        day = super().to_internal_value(value)
        if not 1900 <= day.year < 2200:
            self.fail("range")
        return day


# ----------------------------------------------------------------------------------------------
# Content negotiation


class ApiContentNegotiation(DefaultContentNegotiation):
    """JSON at once for the usual partner request (no Accept, */* or application/json); anything
    else (a browser asking for HTML, ?format=) goes through DRF's full negotiation. Parsing the
    Accept header builds every header of the request: a tenth of a member read's CPU."""

    def select_renderer(self, request, renderers, format_suffix=None):
        accept = request.META.get("HTTP_ACCEPT", "*/*")
        if (
            accept in ("*/*", "application/json")
            and format_suffix is None
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
            and renderers[0].media_type == "application/json"
        ):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)


# ----------------------------------------------------------------------------------------------
# Output


class ReadSerializer(serializers.Serializer):
    """A read-only serializer that builds its fields once per class, not once per instance.

    DRF deep-copies every declared field each time a serializer is instantiated; for a member
    read that is a third of the request's CPU. Output serializers never validate, so their bound
    fields can be shared: `to_representation` walks a prototype's fields and calls
    SerializerMethodFields on the current instance (with its own context).
    """

    def to_representation(self, instance):
        fields = type(self).__dict__.get("_prototype_fields")
        if fields is None:
            prototype = type(self)(context={})
            fields = [field for field in prototype.fields.values() if not field.write_only]
            type(self)._prototype_fields = fields
        data = {}
        for field in fields:
            if isinstance(field, serializers.SerializerMethodField):
                data[field.field_name] = getattr(self, field.method_name)(instance)
                continue
            attribute = field.get_attribute(instance)
            data[field.field_name] = None if attribute is None else field.to_representation(attribute)
        return data


# ----------------------------------------------------------------------------------------------
# Pagination


class ApiCursorPagination(CursorPagination):
    """Cursor pagination: no COUNT(*), stable under inserts; `?page_size=` up to 500."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "-id"


def cursor_pagination(ordering: str, page_size: int = 100) -> type[ApiCursorPagination]:
    return type("CursorPagination", (ApiCursorPagination,), {"ordering": ordering, "page_size": page_size})


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
