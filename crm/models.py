"""Partners of the REST API, their API keys, and the stored responses of idempotent requests."""

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _
from rest_framework_api_key.models import AbstractAPIKey

from crm.core.models import BaseModel


class Scope(models.TextChoices):
    """What an API key may do. A key without a scope gets 403 on the endpoints that need it."""

    MEMBERS_READ = "members:read", _("Read members")
    MEMBERS_WRITE = "members:write", _("Create and update members")
    EVENTS_WRITE = "events:write", _("Record behaviour events")
    POINTS_READ = "points:read", _("Read points balances and history")
    POINTS_WRITE = "points:write", _("Earn, redeem and reverse points")
    COUPONS_WRITE = "coupons:write", _("Issue, validate and redeem coupons")
    TICKETS_WRITE = "tickets:write", _("Report complaints")
    UGC_READ = "ugc:read", _("Read member submissions, polls and poll results")
    UGC_WRITE = "ugc:write", _("Submit member content and poll votes")


class Partner(BaseModel):
    """A system that talks to the CRM over the REST API: the shop, the POS, the mini-program…"""

    name = models.CharField(_("name"), max_length=100, unique=True)
    is_active = models.BooleanField(
        _("active"), default=True, help_text=_("An inactive partner's keys are all refused at once.")
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        _("requests per minute"),
        default=600,
        help_text=_("How many requests each of the partner's keys may make per minute; 0 means no limit."),
    )
    contact = models.CharField(_("contact"), max_length=255, blank=True)
    notes = models.TextField(_("notes"), blank=True)

    class Meta:
        verbose_name = _("API partner")
        verbose_name_plural = _("API partners")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def validate_scopes(value) -> None:
    if not isinstance(value, list) or any(scope not in Scope.values for scope in value):
        raise ValidationError(_("Choose scopes from the list."))


class PartnerAPIKey(AbstractAPIKey):
    """A hashed API key of a partner (djangorestframework-api-key): shown once, revocable, expiring."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("partner"))
    scopes = models.JSONField(_("scopes"), default=list, blank=True, validators=[validate_scopes])

    class Meta(AbstractAPIKey.Meta):
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class IdempotencyKey(models.Model):
    """The first response to a POST sent with an Idempotency-Key header, replayed to repeats.

    One row per (owner, key): the owner is the partner ("p:<id>") or the staff user ("u:<id>").
    The row is inserted before the request runs and holds its response once it has; a
    concurrent repeat waits on the row's lock and then replays it. Kept 24 hours.
    """

    owner = models.CharField(_("owner"), max_length=32)
    key = models.CharField(_("idempotency key"), max_length=255)
    request_hash = models.CharField(_("request hash"), max_length=64)
    method = models.CharField(_("method"), max_length=8)
    path = models.CharField(_("path"), max_length=255)
    response_status = models.PositiveSmallIntegerField(_("response status"), null=True, blank=True)
    # The JSON text as first sent: jsonb would reorder keys and replays must be byte-identical.
    response_body = models.TextField(_("response body"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="idempotencykey_owner_key_uniq")]
        indexes = [models.Index(fields=["created_at"], name="idempotencykey_created_idx")]

    def __str__(self) -> str:
        return f"{self.owner} {self.key}"

    @property
    def is_complete(self) -> bool:
        return self.response_status is not None


# Authentication reads a cached snapshot of the key and its partner (crm.core.api): any change to
# either drops the snapshot at once, so a revoked key or a deactivated partner is refused on the
# next request, in every process sharing the cache.
@receiver([post_save, post_delete], sender=PartnerAPIKey, dispatch_uid="crm_forget_api_key")
def _forget_api_key(sender, instance: PartnerAPIKey, **kwargs) -> None:
    from crm.core.api.auth import partner_key_forget

    partner_key_forget(instance.prefix)


@receiver([post_save, post_delete], sender=Partner, dispatch_uid="crm_forget_partner_keys")
def _forget_partner_keys(sender, instance: Partner, **kwargs) -> None:
    from crm.core.api.auth import partner_key_forget

    for prefix in PartnerAPIKey.objects.filter(partner_id=instance.pk).values_list("prefix", flat=True):
        partner_key_forget(prefix)
