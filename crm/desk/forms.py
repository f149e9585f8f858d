"""Forms of the crisis desk's staff pages (and the admin, which posts to the same views)."""

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from campaigns.models import MessageChannel, MessageLanguage
from crm.desk.models import AudienceKind, CompensationKind, Severity


def staff_who_work_tickets():
    """Active staff who may work tickets (through a role or directly), for owner choices."""
    users = get_user_model().objects.filter(is_active=True, is_staff=True)
    can = (
        Q(is_superuser=True)
        | Q(groups__permissions__codename="change_ticket", groups__permissions__content_type__app_label="desk")
        | Q(user_permissions__codename="change_ticket", user_permissions__content_type__app_label="desk")
    )
    return users.filter(can).distinct().order_by("username")


class TicketOpenForm(forms.Form):
    title = forms.CharField(label=_("title"), max_length=200)
    description = forms.CharField(label=_("description"), widget=forms.Textarea(attrs={"rows": 3}), required=False)
    severity = forms.ChoiceField(label=_("severity"), choices=Severity.choices, initial=Severity.HIGH)
    audience_kind = forms.ChoiceField(
        label=_("affected members"),
        choices=[c for c in AudienceKind.choices if c[0]],
        widget=forms.RadioSelect,
        initial=AudienceKind.GROUP,
    )
    segment = forms.ModelChoiceField(label=_("segment"), queryset=None, required=False)
    member_numbers = forms.CharField(
        label=_("member numbers"),
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text=_("Separated by new lines, commas or spaces."),
    )
    group = forms.CharField(label=_("community group"), max_length=120, required=False)
    owner = forms.ModelChoiceField(label=_("owner"), queryset=None, required=False)

    def __init__(self, *args, **kwargs):
        from members.models_layers import Segment

        super().__init__(*args, **kwargs)
        self.fields["segment"].queryset = Segment.objects.order_by("name")
        self.fields["owner"].queryset = staff_who_work_tickets()

    def clean(self):
        data = super().clean()
        kind = data.get("audience_kind")
        chosen = {"segment": data.get("segment"), "list": data.get("member_numbers"), "group": data.get("group")}
        field = {"segment": "segment", "list": "member_numbers", "group": "group"}.get(kind)
        if field and not chosen[kind]:
            self.add_error(field, _("Fill this in for the kind of affected members you chose."))
        return data

    def audience(self) -> dict:
        kind = self.cleaned_data["audience_kind"]
        if kind == AudienceKind.SEGMENT:
            return {"segment": self.cleaned_data["segment"]}
        if kind == AudienceKind.LIST:
            return {"member_numbers": self.cleaned_data["member_numbers"]}
        return {"group": self.cleaned_data["group"]}


class NoticeForm(forms.Form):
    body = forms.CharField(
        label=_("message"),
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=4000,
        help_text=_(
            "Sent to every affected member as a transactional message (not capped). You may use {{ member.name }}."
        ),
    )
    channel = forms.ChoiceField(label=_("channel"), choices=MessageChannel.choices, initial=MessageChannel.WECOM)
    language = forms.ChoiceField(label=_("language"), choices=MessageLanguage.choices, initial=MessageLanguage.CHINESE)
    subject = forms.CharField(
        label=_("subject"), max_length=200, required=False, help_text=_("E-mail and in-app messages only.")
    )


class CompensationForm(forms.Form):
    kind = forms.ChoiceField(label=_("compensation"), choices=CompensationKind.choices, initial=CompensationKind.POINTS)
    points = forms.IntegerField(label=_("points each"), min_value=1, max_value=1_000_000, required=False)
    batch = forms.ModelChoiceField(label=_("coupon batch"), queryset=None, required=False)

    def __init__(self, *args, **kwargs):
        from loyalty.models import CouponBatch

        super().__init__(*args, **kwargs)
        self.fields["batch"].queryset = CouponBatch.objects.filter(valid_until__gt=timezone.now()).order_by("-pk")

    def clean(self):
        data = super().clean()
        if data.get("kind") == CompensationKind.POINTS and not data.get("points"):
            self.add_error("points", _("How many points each?"))
        if data.get("kind") == CompensationKind.COUPON and not data.get("batch"):
            self.add_error("batch", _("Choose a coupon batch."))
        return data


class ReasonForm(forms.Form):
    reason = forms.CharField(label=_("reason"), max_length=2000)


class NoteForm(forms.Form):
    note = forms.CharField(label=_("note"), max_length=2000, required=False)


class ReassignForm(forms.Form):
    owner = forms.ModelChoiceField(label=_("new owner"), queryset=None)
    note = forms.CharField(label=_("note"), max_length=2000, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = staff_who_work_tickets()
