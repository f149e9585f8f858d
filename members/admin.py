from members import import_admin  # noqa: F401  (registers the ImportJob admin)

# isort: split
# Admin for operations staff: members, tags and the behaviour log.
#
# The member changelist must stay fast at a million rows: the base paginator never counts the
# whole table, every filter and sort maps to an index of Member.Meta.indexes, filter choices
# come from index scans, and search is exact or prefix matching only.
import html
import re
import tempfile
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.templatetags.admin_list import result_headers, result_hidden_fields
from django.contrib.admin.views.main import IS_POPUP_VAR, ChangeList
from django.contrib.humanize.templatetags.humanize import intcomma
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef
from django.http import FileResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeData, mark_safe
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from crm.core.admin import BaseModelAdmin, ReadOnlyAdminMixin
from crm.core.exceptions import ApplicationError
from loyalty.member_admin import MemberLoyaltyActionsMixin, member_loyalty_context
from members import selectors
from members.models import Member, MemberEvent, MemberTag, Tag, TagKind
from members.resources import MemberResource, can_view_full_phone, full_phone, mask_phone, members_export_write
from members.services import member_save, member_tags_add, member_tags_remove, tags_get_or_create

# An export from the admin is built within the request; bigger selections go through the
# `export_members` command until exports run in the background.
ADMIN_EXPORT_MAX_ROWS = 100_000
MEMBER_PAGE_EVENTS = 20
_PK_PLACEHOLDER = "__pk__"


class TagFilter(admin.SimpleListFilter):
    title = _("tag")
    parameter_name = "tag"

    def lookups(self, request, model_admin):
        return list(Tag.objects.order_by("name").values_list("pk", "name"))

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            raise IncorrectLookupParameters(f"tag={value!r}")
        # A semi-join on the (member, tag) index: a join on the tag would need DISTINCT, which
        # sorts every matching member before the first page can be shown.
        return queryset.filter(Exists(MemberTag.objects.filter(member=OuterRef("pk"), tag_id=int(value))))


class CityFilter(admin.SimpleListFilter):
    title = _("city")
    parameter_name = "city"

    def lookups(self, request, model_admin):
        return [(city, city) for city in selectors.member_city_choices()]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(city=value) if value else queryset


class LastActiveFilter(admin.SimpleListFilter):
    """The recency bands operations staff work with (DOMAIN.md: 7, 30 and 90 days)."""

    title = _("last active")
    parameter_name = "active"

    def lookups(self, request, model_admin):
        return [
            ("7d", _("Within 7 days")),
            ("30d", _("Within 30 days")),
            ("30-90d", _("30 to 90 days ago")),
            ("90d+", _("More than 90 days ago")),
            ("never", _("Never")),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        now = timezone.now()
        ranges = {
            "7d": {"last_active_at__gte": now - timedelta(days=7)},
            "30d": {"last_active_at__gte": now - timedelta(days=30)},
            "30-90d": {"last_active_at__lt": now - timedelta(days=30), "last_active_at__gte": now - timedelta(days=90)},
            "90d+": {"last_active_at__lt": now - timedelta(days=90)},
            "never": {"last_active_at__isnull": True},
        }
        if value not in ranges:
            raise IncorrectLookupParameters(f"active={value!r}")
        return queryset.filter(**ranges[value])


class EventSourceFilter(admin.SimpleListFilter):
    title = _("source")
    parameter_name = "source"

    def lookups(self, request, model_admin):
        return [(source, source) for source in selectors.event_source_choices()]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(source=value) if value else queryset


class MemberChangeList(ChangeList):
    def get_ordering(self, request, queryset):
        # Sorting on a column, Django orders by that column, then by the admin's default ordering,
        # then by -pk: ORDER BY total_spent, joined_at DESC, id DESC. No index serves that, so
        # PostgreSQL sorts every run of equal values (all members who never bought, a whole
        # channel). Sorting on the column alone, ties broken by id in the same direction, is one
        # scan of the column's (x, id) index.
        ordering = super().get_ordering(request, queryset.order_by())
        if len(ordering) == 2 and ordering[-1] == "-pk" and isinstance(ordering[0], str):
            if not ordering[0].startswith("-"):
                ordering[-1] = "pk"
        return ordering

    @cached_property
    def rendered_results(self) -> dict:
        """The context of admin/change_list_results.html, with the rows rendered by _row().

        Django's generic cell rendering (items_for_result) looks up every cell's field, label
        and display rules, and links each row with a reverse() and a resolve(): 70-100 ms of a
        100-row page on the benchmark machine, more than all the queries. The member list
        knows its columns, so it renders them directly, with the same markup. Raw-id lookup
        popups keep Django's rendering (change_list.html), whose links pick the member.
        """
        headers = list(result_headers(self))
        url = reverse(f"{self.model_admin.admin_site.name}:members_member_change", args=[_PK_PLACEHOLDER])
        query = f"?{self.preserved_filters}" if self.preserved_filters else ""
        labels = {
            field.name: {value: str(label) for value, label in field.flatchoices}
            for field in self.lookup_opts.fields
            if field.choices and field.name in self.list_display
        }
        rows = []
        for member in self.result_list:
            member.admin_change_url = url.replace(_PK_PLACEHOLDER, str(member.pk)) + query
            rows.append(self._row(member, labels))
        return {
            "result_headers": headers,
            "num_sorted_fields": sum(1 for header in headers if header["sortable"] and header["sorted"]),
            "result_hidden_fields": list(result_hidden_fields(self)),
            "results": rows,
        }

    def _row(self, member: Member, labels: dict[str, dict]) -> list[str]:
        # f-strings and _html() rather than format_html, whose lazy-string checks cost ~10 µs
        # a call: more than the rest of a cell.
        empty = self.model_admin.get_empty_value_display()
        cells = []
        for name in self.list_display:
            if name == "action_checkbox":
                cells.append(mark_safe(f'<td class="action-checkbox">{self.model_admin.action_checkbox(member)}</td>'))
                continue
            # Same lookup order as Django's: a method of the admin, then a field of the model.
            display = getattr(self.model_admin, name, None)
            if display is not None:
                value = display(member)
            else:
                field = self.lookup_opts.get_field(name)
                value = getattr(member, field.attname)
                if name in labels and value is not None:
                    value = labels[name].get(value, value)
                elif isinstance(value, Decimal):
                    value = formats.number_format(value, field.decimal_places)
            tag = "th" if name == "display_name" else "td"
            shown = empty if value is None or value == "" else value
            cells.append(mark_safe(f'<{tag} class="field-{name}">{_html(shown)}</{tag}>'))
        return cells


def _html(value) -> str:
    """Django's escape() (html.escape of str(value)), leaving safe strings as they are."""
    return value if isinstance(value, SafeData) else html.escape(str(value))


def _compact_datetime(field_name: str, description) -> Callable:
    """A sortable list column showing a datetime as 2026-01-06 12:29 in the current time zone.

    Django's localized rendering costs ~50 µs a cell against ~10 µs here, and a page of 100
    members has 300 such cells; the short form also keeps the list narrow.
    """

    @admin.display(description=description, ordering=field_name)
    def column(self, member: Member) -> str | None:
        value = getattr(member, field_name)
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if value else None

    return column


class MemberTagsForm(forms.Form):
    tags = forms.ModelMultipleChoiceField(
        label=_("Tags"),
        queryset=Tag.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Automatic tags follow behaviour and are not listed."),
    )
    new_tags = forms.CharField(
        label=_("New tags"),
        required=False,
        max_length=1000,
        help_text=_("Tags that do not exist yet; separate several with commas."),
    )

    def __init__(self, *args, allow_new: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tags"].queryset = Tag.objects.filter(kind=TagKind.MANUAL).order_by("name")
        if not allow_new:
            del self.fields["new_tags"]

    def clean_new_tags(self) -> list[str]:
        names = sorted({name.strip() for name in re.split(r"[,，、;；\n]", self.cleaned_data["new_tags"])} - {""})
        max_length = Tag._meta.get_field("name").max_length
        too_long = [name for name in names if len(name) > max_length]
        if too_long:
            raise ValidationError(
                _("A tag name has at most %(max)d characters: %(names)s"),
                params={"max": max_length, "names": ", ".join(too_long)},
            )
        automatic = list(
            Tag.objects.filter(name__in=names)
            .exclude(kind=TagKind.MANUAL)
            .order_by("name")
            .values_list("name", flat=True)
        )
        if automatic:
            raise ValidationError(
                _("These tags are set automatically from behaviour: %(names)s"), params={"names": ", ".join(automatic)}
            )
        return names

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("tags") and not cleaned.get("new_tags") and not self.errors:
            raise ValidationError(_("Pick or type at least one tag."))
        return cleaned


@admin.register(Member)
class MemberAdmin(MemberLoyaltyActionsMixin, BaseModelAdmin):
    change_list_template = "admin/members/member/change_list.html"
    # No foreign keys in the list, so nothing to join.
    list_select_related = ()
    # Only columns with an (x, id) index; name has a pattern index that cannot sort.
    sortable_by = ("city", "channel", "joined", "last_active", "last_purchase", "orders_count", "total_spent")
    list_filter = (
        TagFilter,
        "channel",
        CityFilter,
        ("joined_at", admin.DateFieldListFilter),
        LastActiveFilter,
    )
    # Facets count members per filter choice: a full count for each, on every page view.
    show_facets = admin.ShowFacets.NEVER
    # get_search_results decides how to search; listing a field here shows the search box.
    search_fields = ("name",)
    search_help_text = _("Phone number, member number, or the beginning of a name.")
    ordering = ("-joined_at",)
    # grant_points and issue_coupons come from loyalty (MemberLoyaltyActionsMixin).
    actions = ("add_tags", "remove_tags", "grant_points", "issue_coupons", "export_csv", "export_xlsx")

    profile_fields = ("external_id", "name", "phone", "email", "gender", "birthday", "city", "channel", "joined_at")

    def get_changelist(self, request, **kwargs):
        return MemberChangeList

    def get_list_display(self, request):
        phone = "phone_full" if can_view_full_phone(request.user) else "phone_masked"
        return (
            "display_name",
            phone,
            "city",
            "channel",
            "joined",
            "last_active",
            "last_purchase",
            "orders_count",
            "total_spent",
        )

    def get_list_display_links(self, request, list_display):
        # Rows link through display_name (see MemberChangeList.rendered_results). A raw-id
        # lookup popup from another admin keeps Django's links, which pick the member.
        return ("display_name",) if IS_POPUP_VAR in request.GET else None

    def get_search_results(self, request, queryset, search_term):
        return selectors.members_search(queryset=queryset, term=search_term), False

    def get_actions(self, request):
        actions = super().get_actions(request)
        # The stock bulk delete loads every selected member and its events to list them; a
        # member is deleted from its own page instead.
        actions.pop("delete_selected", None)
        return actions

    def has_export_permission(self, request) -> bool:
        return request.user.has_perm("members.export_members")

    # Detail page -----------------------------------------------------------------------------

    def get_fieldsets(self, request, obj=None):
        profile = self.profile_fields
        if obj is not None and not can_view_full_phone(request.user):
            profile = tuple("phone_masked" if name == "phone" else name for name in profile)
        fieldsets = [
            (None, {"fields": profile}),
            (_("Opt-outs"), {"fields": ("sms_opt_out", "email_opt_out", "wecom_opt_out")}),
            (_("Notes"), {"fields": ("notes",)}),
        ]
        if obj is not None:
            fieldsets.append((_("Record"), {"classes": ("collapse",), "fields": ("created_at", "updated_at")}))
        return fieldsets

    def save_model(self, request, obj, form, change):
        member_save(member=obj, changed_fields=form.changed_data)

    def get_readonly_fields(self, request, obj=None):
        readonly = ["created_at", "updated_at"]
        if obj is not None and obj.external_id:
            # Imports and partners find the member by this number; changing it would detach them.
            readonly.append("external_id")
        if obj is not None and not can_view_full_phone(request.user):
            readonly.append("phone_masked")
        return readonly

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["member_glance"] = {
                "phone": self.phone_full(obj) if can_view_full_phone(request.user) else self.phone_masked(obj),
                "tags": list(selectors.member_tag_list(member_id=obj.pk)),
                "events": list(selectors.member_latest_events(member_id=obj.pk, limit=MEMBER_PAGE_EVENTS)),
                "events_limit": MEMBER_PAGE_EVENTS,
                "events_url": reverse("admin:members_memberevent_changelist") + f"?member__id__exact={obj.pk}",
                "can_change_tags": self.has_change_permission(request, obj),
                "changelist_url": reverse("admin:members_member_changelist"),
            }
            context["member_loyalty"] = member_loyalty_context(request, obj)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def changelist_view(self, request, extra_context=None):
        extra_context = extra_context or {}
        user = request.user
        extra_context["can_import_members"] = user.has_perm("members.import_members") and user.has_perm(
            "members.add_importjob"
        )
        return super().changelist_view(request, extra_context)

    # Columns ---------------------------------------------------------------------------------

    joined = _compact_datetime("joined_at", _("joined at"))
    last_active = _compact_datetime("last_active_at", _("last active"))
    last_purchase = _compact_datetime("last_purchase_at", _("last purchase"))

    @admin.display(description=_("name"))
    def display_name(self, member: Member) -> str:
        url = getattr(member, "admin_change_url", None)
        return mark_safe(f'<a href="{_html(url)}">{_html(member)}</a>') if url else str(member)

    def action_checkbox(self, member: Member) -> str:
        # Django's markup, without rendering a form widget through the template engine per row.
        label = _html(gettext("Select this object for an action - {}").format(member))
        return mark_safe(
            f'<input type="checkbox" name="{ACTION_CHECKBOX_NAME}" value="{member.pk}" '
            f'class="action-select" aria-label="{label}">'
        )

    @admin.display(description=_("phone"))
    def phone_masked(self, member: Member) -> str | None:
        return mask_phone(member.phone) or None

    @admin.display(description=_("phone"))
    def phone_full(self, member: Member) -> str | None:
        return full_phone(member.phone) or None

    # Actions ---------------------------------------------------------------------------------

    @admin.action(permissions=["change"], description=_("Add tags to the selected members"))
    def add_tags(self, request, queryset):
        return self._tags_action(request, queryset, adding=True)

    @admin.action(permissions=["change"], description=_("Remove tags from the selected members"))
    def remove_tags(self, request, queryset):
        return self._tags_action(request, queryset, adding=False)

    @admin.action(permissions=["export"], description=_("Export the selected members (CSV)"))
    def export_csv(self, request, queryset):
        return self._export(request, queryset, "csv")

    @admin.action(permissions=["export"], description=_("Export the selected members (Excel)"))
    def export_xlsx(self, request, queryset):
        return self._export(request, queryset, "xlsx")

    def _tags_action(self, request, queryset, *, adding: bool):
        """First call renders the page to pick tags; the page posts back here with "apply"."""
        allow_new = adding and request.user.has_perm("members.add_tag")
        form = MemberTagsForm(request.POST if "apply" in request.POST else None, allow_new=allow_new)
        if form.is_bound and form.is_valid():
            tags = list(form.cleaned_data["tags"])
            try:
                if adding:
                    if form.cleaned_data.get("new_tags"):
                        tags += tags_get_or_create(names=form.cleaned_data["new_tags"], actor=request.user)
                    tags = list({tag.pk: tag for tag in tags}.values())
                    links = member_tags_add(queryset=queryset, tags=tags, actor=request.user)
                    message = ngettext(
                        "Tags added: %(tags)s (%(links)d new tag assignment).",
                        "Tags added: %(tags)s (%(links)d new tag assignments).",
                        links,
                    )
                else:
                    links = member_tags_remove(queryset=queryset, tags=tags, actor=request.user)
                    message = ngettext(
                        "Tags removed: %(tags)s (%(links)d tag assignment removed).",
                        "Tags removed: %(tags)s (%(links)d tag assignments removed).",
                        links,
                    )
            except ApplicationError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                names = ", ".join(tag.name for tag in tags)
                self.message_user(request, message % {"tags": names, "links": links}, messages.SUCCESS)
            return self._redirect_after_action(request)

        select_across = request.POST.get("select_across") == "1"
        selected = request.POST.getlist(ACTION_CHECKBOX_NAME)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Add tags") if adding else _("Remove tags"),
            "opts": self.opts,
            "form": form,
            "action": "add_tags" if adding else "remove_tags",
            "select_across": select_across,
            "selected": selected,
            "member_count": self.get_paginator(request, queryset, 1).count if select_across else len(selected),
            "next_url": _safe_next_url(request),
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/members/member/tags_action.html", context)

    def _redirect_after_action(self, request):
        """Back to the member page when the action was started there, else to the changelist."""
        return HttpResponseRedirect(_safe_next_url(request) or request.get_full_path())

    def _export(self, request, queryset, file_format: str):
        if queryset.order_by()[: ADMIN_EXPORT_MAX_ROWS + 1].count() > ADMIN_EXPORT_MAX_ROWS:
            self.message_user(
                request,
                _(
                    "More than %(max)s members are selected. Narrow the selection with the filters, "
                    "or ask an administrator to run the export_members command."
                )
                % {"max": intcomma(ADMIN_EXPORT_MAX_ROWS)},
                messages.ERROR,
            )
            return None
        output = tempfile.TemporaryFile()
        members_export_write(
            stream=output, file_format=file_format, resource=MemberResource.for_user(request.user), queryset=queryset
        )
        output.seek(0)
        filename = f"members-{timezone.localtime():%Y%m%d-%H%M%S}.{file_format}"
        return FileResponse(output, as_attachment=True, filename=filename)


def _safe_next_url(request) -> str:
    """The "_next" page posted with an action, if it is on this site."""
    next_url = request.POST.get("_next", "")
    if next_url and url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return next_url
    return ""


class TagChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        # One grouped count for the tags on this page, instead of a COUNT per row or a join
        # that the paginator's count would have to carry too.
        tags = list(self.result_list)
        counts = selectors.tag_member_counts(tag_ids=[tag.pk for tag in tags])
        for tag in tags:
            tag.member_count = counts.get(tag.pk, 0)


@admin.register(Tag)
class TagAdmin(BaseModelAdmin):
    list_display = ("name", "kind", "description", "tagged_members")
    list_filter = ("kind",)
    list_select_related = ()
    search_fields = ("name",)
    ordering = ("name",)
    show_facets = admin.ShowFacets.NEVER
    fields = ("name", "kind", "description")

    def get_changelist(self, request, **kwargs):
        return TagChangeList

    # Not named "members": that is the reverse relation from Member.tags, which the list would show.
    @admin.display(description=_("members"))
    def tagged_members(self, tag: Tag) -> str:
        url = reverse("admin:members_member_changelist") + f"?{TagFilter.parameter_name}={tag.pk}"
        return format_html('<a href="{}">{}</a>', url, intcomma(tag.member_count))


@admin.register(MemberEvent)
class MemberEventAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ("occurred_at", "member", "kind", "sub_kind", "amount", "source", "external_id")
    list_select_related = ("member",)
    list_filter = ("kind", EventSourceFilter, ("occurred_at", admin.DateFieldListFilter))
    show_facets = admin.ShowFacets.NEVER
    raw_id_fields = ("member",)
    ordering = ("-occurred_at",)
    # Only occurred_at has an index that can sort the whole log.
    sortable_by = ("occurred_at",)


# Layers, churn scores, recompute runs and segments (issue 4).
from members import segment_admin  # noqa: E402,F401
