"""Admin for API partners and their keys. A key's secret is shown once, on creation."""

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from rest_framework_api_key.models import APIKey

from crm.core.admin import BaseModelAdmin
from crm.models import Partner, PartnerAPIKey, Scope
from crm.services import partner_api_key_create, partner_api_key_revoke

# The library registers its own stand-alone key model; partners use PartnerAPIKey only.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


class PartnerAPIKeyInline(admin.TabularInline):
    model = PartnerAPIKey
    fields = ("prefix", "name", "scopes", "created", "expiry_date", "revoked")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Partner)
class PartnerAdmin(BaseModelAdmin):
    list_display = ("name", "is_active", "rate_limit_per_minute", "key_count", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name",)
    fields = ("name", "is_active", "rate_limit_per_minute", "contact", "notes")
    inlines = [PartnerAPIKeyInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(key_count=Count("api_keys"))

    @admin.display(description=_("API keys"), ordering="key_count")
    def key_count(self, obj) -> int:
        return obj.key_count


class PartnerAPIKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        label=_("scopes"),
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_("What the key may do. A partner only sees and changes what its key's scopes allow."),
    )

    class Meta:
        model = PartnerAPIKey
        fields = ("partner", "name", "scopes", "expiry_date")


@admin.register(PartnerAPIKey)
class PartnerAPIKeyAdmin(BaseModelAdmin):
    form = PartnerAPIKeyForm
    list_display = ("prefix", "name", "partner", "scope_list", "created", "expiry_date", "is_expired", "revoked")
    list_filter = ("revoked", "partner")
    list_select_related = ("partner",)
    search_fields = ("name", "prefix", "partner__name")
    actions = ["revoke_keys"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("partner", "name", "scopes", "expiry_date")
        return ("prefix", "partner", "name", "scopes", "created", "expiry_date", "revoked")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        if obj.revoked:
            return ("prefix", "partner", "name", "scopes", "created", "expiry_date", "revoked")
        # Revoking goes through the action, which cannot be undone.
        return ("prefix", "partner", "created", "revoked")

    @admin.display(description=_("scopes"))
    def scope_list(self, obj) -> str:
        return ", ".join(obj.scopes)

    @admin.display(description=_("expired"), boolean=True)
    def is_expired(self, obj) -> bool:
        return obj.has_expired

    def save_model(self, request, obj, form, change) -> None:
        if change:
            obj.save()
            return
        api_key, secret = partner_api_key_create(
            partner=obj.partner, name=obj.name, scopes=obj.scopes, expires_at=obj.expiry_date
        )
        obj.pk, obj.prefix, obj.hashed_key = api_key.pk, api_key.prefix, api_key.hashed_key
        obj._state.adding = False
        messages.warning(
            request,
            _("The API key for %(name)s is %(key)s — copy it now: it is stored hashed and will not be shown again.")
            % {"name": api_key.name, "key": secret},
        )

    @admin.action(permissions=["change"], description=_("Revoke selected API keys (cannot be undone)"))
    def revoke_keys(self, request, queryset) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked=False):
            partner_api_key_revoke(api_key=api_key)
            revoked += 1
        self.message_user(
            request, ngettext("%(count)d key revoked.", "%(count)d keys revoked.", revoked) % {"count": revoked}
        )
