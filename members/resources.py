"""Member export (django-import-export): the columns, phone masking and formula escaping.

The columns are the fields declared on MemberResource, in order; that is the one place to add
a column (the RFM columns of a later issue go there) and every export path, the admin action
and the `export_members` command, picks it up.

English headers are the column names the member import accepts, so an export can be corrected
and imported again; zh-hans headers come from the translation catalogue.
"""

import csv
import io
from collections.abc import Callable, Iterator
from typing import BinaryIO

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Prefetch, QuerySet
from django.utils.translation import pgettext_lazy
from import_export import fields, resources, widgets
from phonenumber_field.phonenumber import PhoneNumber

from members.models import Member, Tag

VIEW_FULL_PHONE = "members.view_full_phone"
EXPORT_CHUNK_SIZE = 2_000
EXPORT_FORMATS = ("csv", "xlsx")

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection");
# tab and carriage return are on OWASP's list too. django-import-export's own escaping only
# strips a leading "=".
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(value: str) -> str:
    """Prefix text that a spreadsheet would run as a formula with a quote, so it stays text."""
    return f"'{value}" if value.startswith(_FORMULA_PREFIXES) else value


def mask_phone(phone: PhoneNumber | str | None) -> str:
    """138****5678: the first three and last four digits of the national number.

    Numbers outside China keep their country code (+1 650***0000); very short numbers show
    only their last two digits.
    """
    # Tested for None, not falsiness: bool(PhoneNumber) validates the number (~100 µs a row).
    if phone is None:
        return ""
    if not isinstance(phone, PhoneNumber):
        if not phone:
            return ""
        phone = PhoneNumber.from_string(str(phone))
    national = str(phone.national_number or "")
    if len(national) >= 8:
        masked = national[:3] + "*" * (len(national) - 7) + national[-4:]
    else:
        masked = "*" * max(len(national) - 2, 0) + national[-2:]
    return masked if phone.country_code == 86 else f"+{phone.country_code} {masked}"


def full_phone(phone: PhoneNumber | None) -> str:
    """The number as staff dial it: national digits for China, E.164 elsewhere."""
    if phone is None or not phone.national_number:
        return ""
    return str(phone.national_number) if phone.country_code == 86 else phone.as_e164


def can_view_full_phone(user: AbstractBaseUser | AnonymousUser | None) -> bool:
    return user is not None and user.has_perm(VIEW_FULL_PHONE)


class TextWidget(widgets.Widget):
    """Free text that staff or partners typed: escaped so it cannot run as a formula."""

    def render(self, value, obj=None, **kwargs) -> str:
        return escape_formula(super().render(value, obj, **kwargs))


def _text(attribute: str, header) -> fields.Field:
    return fields.Field(attribute=attribute, column_name=header, widget=TextWidget(), readonly=True)


def _number(attribute: str, header, *, decimal: bool = False) -> fields.Field:
    widget = widgets.DecimalWidget() if decimal else widgets.IntegerWidget()
    return fields.Field(attribute=attribute, column_name=header, widget=widget, readonly=True)


class MemberResource(resources.Resource):
    """Export of members. Build it with `for_user` so phones are masked unless allowed."""

    # Translators: member export column header, zh-hans "会员编号"
    external_id = _text("external_id", pgettext_lazy("member export column", "external_id"))
    # Translators: member export column header, zh-hans "姓名"
    name = _text("name", pgettext_lazy("member export column", "name"))
    # Translators: member export column header, zh-hans "手机号"
    phone = fields.Field(attribute="phone", column_name=pgettext_lazy("member export column", "phone"), readonly=True)
    # Translators: member export column header, zh-hans "邮箱"
    email = _text("email", pgettext_lazy("member export column", "email"))
    # Translators: member export column header, zh-hans "性别"
    gender = _text("get_gender_display", pgettext_lazy("member export column", "gender"))
    # Translators: member export column header, zh-hans "生日"
    birthday = fields.Field(
        attribute="birthday",
        column_name=pgettext_lazy("member export column", "birthday"),
        widget=widgets.DateWidget(),
        readonly=True,
    )
    # Translators: member export column header, zh-hans "城市"
    city = _text("city", pgettext_lazy("member export column", "city"))
    # Translators: member export column header, zh-hans "渠道"
    channel = _text("get_channel_display", pgettext_lazy("member export column", "channel"))
    # Translators: member export column header, zh-hans "入会时间"
    joined_at = fields.Field(
        attribute="joined_at",
        column_name=pgettext_lazy("member export column", "joined_at"),
        widget=widgets.DateTimeWidget(),
        readonly=True,
    )
    # Translators: member export column header, zh-hans "标签"
    tags = fields.Field(column_name=pgettext_lazy("member export column", "tags"), readonly=True)
    # Translators: member export column header, zh-hans "最近活跃"
    last_active_at = fields.Field(
        attribute="last_active_at",
        column_name=pgettext_lazy("member export column", "last_active_at"),
        widget=widgets.DateTimeWidget(),
        readonly=True,
    )
    # Translators: member export column header, zh-hans "最近购买"
    last_purchase_at = fields.Field(
        attribute="last_purchase_at",
        column_name=pgettext_lazy("member export column", "last_purchase_at"),
        widget=widgets.DateTimeWidget(),
        readonly=True,
    )
    # Translators: member export column header, zh-hans "订单数"
    orders_count = fields.Field(
        attribute="orders_count",
        column_name=pgettext_lazy("member export column", "orders_count"),
        widget=widgets.IntegerWidget(),
        readonly=True,
    )
    # Translators: member export column header, zh-hans "累计消费（元）"
    total_spent = fields.Field(
        attribute="total_spent",
        column_name=pgettext_lazy("member export column", "total_spent"),
        widget=widgets.DecimalWidget(),
        readonly=True,
    )

    # Layers and churn scores (MemberScore, issue 4); empty for a member not scored yet.
    # Translators: member export column header, zh-hans "最近购买距今（天）"
    recency_days = _number("score__recency_days", pgettext_lazy("member export column", "recency_days"))
    # Translators: member export column header, zh-hans "购买频次"
    frequency = _number("score__frequency", pgettext_lazy("member export column", "frequency"))
    # Translators: member export column header, zh-hans "消费金额（元）"
    monetary = _number("score__monetary", pgettext_lazy("member export column", "monetary"), decimal=True)
    # Translators: member export column header, zh-hans "R 分"
    r_score = _number("score__r_score", pgettext_lazy("member export column", "r_score"))
    # Translators: member export column header, zh-hans "F 分"
    f_score = _number("score__f_score", pgettext_lazy("member export column", "f_score"))
    # Translators: member export column header, zh-hans "M 分"
    m_score = _number("score__m_score", pgettext_lazy("member export column", "m_score"))
    # Translators: member export column header, zh-hans "RFM 总分"
    rfm_score = _number("score__rfm_score", pgettext_lazy("member export column", "rfm_score"))
    # Translators: member export column header, zh-hans "价值分层"
    value_layer = _text("score__get_value_layer_display", pgettext_lazy("member export column", "value_layer"))
    # Translators: member export column header, zh-hans "生命周期阶段"
    lifecycle_stage = _text(
        "score__get_lifecycle_stage_display", pgettext_lazy("member export column", "lifecycle_stage")
    )
    # Translators: member export column header, zh-hans "存活概率"
    p_alive = _number("score__p_alive", pgettext_lazy("member export column", "p_alive"), decimal=True)
    # Translators: member export column header, zh-hans "预计 90 天购买次数"
    expected_purchases_90d = _number(
        "score__expected_purchases_90d", pgettext_lazy("member export column", "expected_purchases_90d"), decimal=True
    )
    # Translators: member export column header, zh-hans "流失风险"
    churn_risk = _number("score__churn_risk", pgettext_lazy("member export column", "churn_risk"))

    def __init__(self, *, unmasked_phones: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.unmasked_phones = unmasked_phones

    @classmethod
    def for_user(cls, user: AbstractBaseUser | AnonymousUser | None) -> "MemberResource":
        return cls(unmasked_phones=can_view_full_phone(user))

    def dehydrate_phone(self, member: Member) -> str:
        phone = full_phone(member.phone) if self.unmasked_phones else mask_phone(member.phone)
        return escape_formula(phone)

    def dehydrate_tags(self, member: Member) -> str:
        # Reads the prefetched tags (see member_export_queryset), one query per chunk.
        return escape_formula(", ".join(tag.name for tag in member.tags.all()))


def member_export_queryset(queryset: QuerySet[Member] | None = None) -> QuerySet[Member]:
    """The members to export with what the columns read, in a stable order for chunking."""
    queryset = Member.objects.all() if queryset is None else queryset
    # The score columns read the member's one MemberScore row: joined, not fetched per member.
    return queryset.select_related("score").prefetch_related(
        Prefetch("tags", queryset=Tag.objects.only("id", "name").order_by("name"))
    ).order_by("pk")


def member_export_rows(
    *, resource: MemberResource, queryset: QuerySet[Member], native_types: bool = False
) -> Iterator[list]:
    """Header row, then one row per member, read in chunks with their tags prefetched.

    native_types keeps numbers and dates as such (for XLSX); otherwise every cell is text.
    """
    yield resource.get_export_headers()
    members = member_export_queryset(queryset).iterator(chunk_size=EXPORT_CHUNK_SIZE)
    for member in members:
        yield resource.export_resource(member, force_native_type=native_types)


def members_export_write(
    *,
    stream: BinaryIO,
    file_format: str,
    resource: MemberResource,
    queryset: QuerySet[Member] | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write members to `stream` as CSV or XLSX without holding them all in memory.

    Returns the number of members written; `progress` is called with each member count
    written since its previous call.
    """
    if file_format not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format {file_format!r}; use one of {EXPORT_FORMATS}.")
    rows = member_export_rows(resource=resource, queryset=queryset, native_types=file_format == "xlsx")
    writer = _write_xlsx if file_format == "xlsx" else _write_csv
    return writer(rows, stream, progress or (lambda written: None))


def _write_csv(rows: Iterator[list], stream: BinaryIO, progress: Callable[[int], None]) -> int:
    # utf-8-sig: Excel reads a CSV without a byte-order mark as the local code page and garbles
    # Chinese.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    writer = csv.writer(text)
    writer.writerow(next(rows))
    written = 0
    for row in rows:
        writer.writerow(row)
        written += 1
        if written % EXPORT_CHUNK_SIZE == 0:
            progress(EXPORT_CHUNK_SIZE)
    progress(written % EXPORT_CHUNK_SIZE)
    text.flush()
    # Leave the caller's stream open: closing the wrapper would close it.
    text.detach()
    return written


def _write_xlsx(rows: Iterator[list], stream: BinaryIO, progress: Callable[[int], None]) -> int:
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    # Write-only mode streams rows to a temporary file instead of building every cell in memory.
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(str(Member._meta.verbose_name_plural))
    sheet.append([str(header) for header in next(rows)])
    written = 0
    for row in rows:
        # Control characters are not allowed in XLSX text; a name pasted from a chat may have one.
        sheet.append([ILLEGAL_CHARACTERS_RE.sub("\ufffd", c) if isinstance(c, str) else c for c in row])
        written += 1
        if written % EXPORT_CHUNK_SIZE == 0:
            progress(EXPORT_CHUNK_SIZE)
    progress(written % EXPORT_CHUNK_SIZE)
    workbook.save(stream)
    return written
