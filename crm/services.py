"""Writes of the ops desk: API partners and their keys, and the pruning of idempotency keys."""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from crm.models import IdempotencyKey, Partner, PartnerAPIKey


@transaction.atomic
def partner_api_key_create(
    *, partner: Partner, name: str, scopes: list[str], expires_at: datetime | None = None
) -> tuple[PartnerAPIKey, str]:
    """Create a key for `partner`; returns the key and its secret, which is never stored or shown again."""
    api_key = PartnerAPIKey(partner=partner, name=name, scopes=sorted(set(scopes)), expiry_date=expires_at)
    secret = PartnerAPIKey.objects.assign_key(api_key)
    api_key.full_clean()
    api_key.save(force_insert=True)
    return api_key, secret


@transaction.atomic
def partner_api_key_revoke(*, api_key: PartnerAPIKey) -> PartnerAPIKey:
    """Revoke a key for good (this cannot be undone); its next request gets 401."""
    if not api_key.revoked:
        api_key.revoked = True
        api_key.save(update_fields=["revoked"])
    return api_key


def idempotency_keys_prune(*, older_than: timedelta = timedelta(hours=24), batch_size: int = 10_000) -> int:
    """Delete the stored responses of idempotent requests older than `older_than`; return how many.

    Deletes in batches of primary keys, each in its own short transaction, so pruning a large
    backlog never holds many row locks for long.
    """
    cutoff = timezone.now() - older_than
    deleted = 0
    while True:
        ids = list(
            IdempotencyKey.objects.filter(created_at__lt=cutoff).order_by().values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        with transaction.atomic():
            deleted += IdempotencyKey.objects.filter(pk__in=ids, created_at__lt=cutoff).delete()[0]
