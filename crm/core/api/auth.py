"""Who is calling: partners' API keys (scoped, cached, throttled) and staff sessions."""

import logging
import pickle
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.throttling import BaseThrottle
from rest_framework_api_key.permissions import KeyParser

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
