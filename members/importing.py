"""Reading member and event files (CSV or XLSX) and normalizing their cells. No database here.

A file becomes a `Table`: its header row and its data rows, each with the 1-based line number
staff see in Excel or a text editor. Headers are matched to fields through aliases in Chinese or
English. Every cell normalizer takes a raw cell (a str from CSV; str, int, float, bool, date or
datetime from XLSX) and returns `(value, error)`: `(None, None)` means the cell is empty, and an
error is a short reason safe to show to staff.

The member path runs for every row of 100,000-row files, so the common cases (11-digit Chinese
mobiles, ISO-like dates, plain labels) take cheap fast paths before any general parser.
"""

import codecs
import csv
import gc
import io
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from datetime import timezone as dt_timezone
from decimal import Decimal, InvalidOperation
from functools import cache
from itertools import islice
from operator import itemgetter

import openpyxl
import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from members.models import Channel, EventKind, Gender, InteractionKind

Cell = str | int | float | bool | date | datetime | None
Normalized = tuple[object, object]  # (value, error or None)


class TableError(ValueError):
    """The file as a whole cannot be imported (format, encoding, headers); `message` is for staff."""

    def __init__(self, message):
        super().__init__(str(message))
        self.message = str(message)


# ---------------------------------------------------------------------------------------------
# Reading files


class Table:
    """The header row and the data rows of an uploaded file; `rows()` can be iterated again."""

    format: str
    headers: list[str]

    def rows(self) -> Iterator[tuple[int, Sequence[Cell]]]:
        """(line, cells) for every row that is not blank, line 1 being the header."""
        raise NotImplementedError

    def estimate_rows(self) -> int:
        """About how many data rows there are, cheaply (for progress and the inline/background choice)."""
        raise NotImplementedError


class CsvTable(Table):
    format = "csv"

    def __init__(self, text: str):
        end = text.find("\n")
        first_line = text if end < 0 else text[:end]
        # Excel writes ";" in some locales and tabs for "Unicode text"; pick what the header uses.
        self.delimiter = max((",", "\t", ";"), key=first_line.count)
        self._text = text
        reader = csv.reader(io.StringIO(text), delimiter=self.delimiter)
        self.headers = [header.strip() for header in next(reader, [])]
        if not any(self.headers):
            raise TableError(_("The file is empty: the first line must hold the column names."))

    def estimate_rows(self) -> int:
        # Lines, not records: blank lines and cells spanning lines make this a slight overestimate.
        return max(0, self._text.count("\n", 0, len(self._text) - 1))

    def rows(self) -> Iterator[tuple[int, Sequence[Cell]]]:
        reader = csv.reader(io.StringIO(self._text), delimiter=self.delimiter)
        next(reader, None)
        start = reader.line_num + 1
        for cells in reader:
            # A quoted cell may span lines: a record's line is where it starts.
            line, start = start, reader.line_num + 1
            if any(cells):
                yield line, cells


class XlsxTable(Table):
    format = "xlsx"

    def __init__(self, data: bytes):
        self._data = data
        rows = self._sheet_rows()
        header = next(rows, None) or ()
        self.headers = ["" if cell is None else str(cell).strip() for cell in header]
        if not any(self.headers):
            raise TableError(_("The first sheet is empty: its first row must hold the column names."))

    def _sheet_rows(self) -> Iterator[tuple]:
        try:
            workbook = openpyxl.load_workbook(io.BytesIO(self._data), read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many types for a damaged or foreign file
            raise TableError(_("This is not a readable XLSX file. Save it from Excel as .xlsx.")) from exc
        try:
            # read_only iteration fills gaps with empty rows, so enumerate() gives the line.
            yield from workbook.worksheets[0].iter_rows(values_only=True)
        finally:
            workbook.close()

    def rows(self) -> Iterator[tuple[int, Sequence[Cell]]]:
        rows = self._sheet_rows()
        next(rows, None)
        for line, cells in enumerate(rows, start=2):
            if any(cell is not None and cell != "" for cell in cells):
                yield line, cells

    def estimate_rows(self) -> int:
        workbook = openpyxl.load_workbook(io.BytesIO(self._data), read_only=True)
        try:
            max_row = workbook.worksheets[0].max_row
        finally:
            workbook.close()
        # Excel records the sheet's used range; only files without one need a full pass.
        return max_row - 1 if max_row else sum(1 for _ in self.rows())


def read_table(data: bytes, filename: str) -> Table:
    """A Table for a CSV or XLSX file, chosen by its extension."""
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if extension == "xlsx":
        return XlsxTable(data)
    if extension in {"csv", "txt", "tsv"}:
        return CsvTable(decode_text(data))
    raise TableError(_("Only CSV and XLSX files can be imported (.xls: save it as .xlsx first)."))


def decode_text(data: bytes) -> str:
    """Decode a CSV file: UTF-8 (with or without BOM), UTF-16 with BOM, else GBK.

    Excel on Chinese Windows saves "CSV" in the ANSI code page (GBK); GB18030 is its superset.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise TableError(_('The file\'s text encoding is not UTF-8 or GBK. Save it as "CSV UTF-8".'))


# ---------------------------------------------------------------------------------------------
# Header aliases

REASON_HEADERS = {"zh": "错误原因", "en": "reason"}
_REASON_ALIASES = ("reason", "error", "errors", "错误原因", "错误", "原因")

MEMBER_COLUMNS: dict[str, tuple[str, ...]] = {
    "external_id": (
        "external_id",
        "member_no",
        "member_number",
        "会员编号",
        "会员号",
        "会员id",
        "会员卡号",
        "客户编号",
    ),
    "name": ("name", "full_name", "姓名", "名字", "会员姓名", "客户姓名"),
    "phone": ("phone", "mobile", "phone_number", "tel", "手机号", "手机", "手机号码", "电话", "联系电话", "电话号码"),
    "email": ("email", "e-mail", "mail", "邮箱", "电子邮箱", "邮件"),
    "gender": ("gender", "sex", "性别"),
    "birthday": ("birthday", "birth_date", "date_of_birth", "dob", "生日", "出生日期"),
    "city": ("city", "城市", "所在城市"),
    "channel": ("channel", "source", "渠道", "来源", "入会渠道", "来源渠道"),
    "joined_at": ("joined_at", "joined", "join_date", "入会时间", "入会日期", "注册时间", "加入时间"),
    "sms_opt_out": ("sms_opt_out", "no_sms", "短信退订", "拒收短信", "不接收短信"),
    "email_opt_out": ("email_opt_out", "no_email", "邮件退订", "拒收邮件", "不接收邮件"),
    "wecom_opt_out": ("wecom_opt_out", "no_wecom", "企微退订", "企业微信退订", "拒收企微消息", "不接收企微消息"),
    "notes": ("notes", "note", "remark", "remarks", "备注"),
}
# A member file needs a way to match rows to members: at least one of these columns.
MEMBER_KEY_FIELDS = ("external_id", "phone")

EVENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "member": ("member", "member_external_id", "member_no", "member_number", "会员编号", "会员号", "会员"),
    "kind": ("kind", "type", "event_type", "类型", "事件类型", "行为类型"),
    "sub_kind": ("sub_kind", "subtype", "sub_type", "子类型", "互动类型"),
    "occurred_at": ("occurred_at", "time", "datetime", "date", "发生时间", "时间", "日期"),
    "amount": ("amount", "金额", "订单金额"),
    "source": ("source", "来源", "来源系统"),
    "external_id": ("external_id", "event_id", "事件编号", "事件id", "订单号"),
    "payload": ("payload", "details", "data", "详情", "附加信息"),
}
EVENT_REQUIRED_FIELDS = ("member", "kind", "occurred_at", "source", "external_id")

_HEADER_NOISE = re.compile(r"[\s_\-.*:：]|[(（][^)）]*[)）]")


def header_key(header: str) -> str:
    """Both “Phone Number (必填)*” and “phone_number” become “phonenumber”."""
    return _HEADER_NOISE.sub("", header).lower()


@dataclass(frozen=True)
class Columns:
    """Where each known field sits in a file's rows, and what the file calls it."""

    index: dict[str, int]
    labels: dict[str, str]
    ignored: list[str]
    reason_index: int | None
    # The language of the file's own headers, for the reason column of the invalid-rows file.
    language: str


def map_columns(headers: Sequence[str], aliases: dict[str, tuple[str, ...]]) -> Columns:
    by_key = {header_key(alias): field_name for field_name, names in aliases.items() for alias in names}
    reason_keys = {header_key(alias) for alias in _REASON_ALIASES}
    index: dict[str, int] = {}
    labels: dict[str, str] = {}
    ignored: list[str] = []
    reason_index = None
    for position, header in enumerate(headers):
        key = header_key(header)
        if not key:
            continue
        if key in reason_keys:
            reason_index = position
            continue
        field_name = by_key.get(key)
        if field_name is None:
            ignored.append(header)
        elif field_name in index:
            raise TableError(
                _("The columns “%(first)s” and “%(second)s” mean the same thing; keep one.")
                % {"first": labels[field_name], "second": header}
            )
        else:
            index[field_name], labels[field_name] = position, header
    language = "zh" if any(_has_cjk(header) for header in headers) else "en"
    return Columns(index=index, labels=labels, ignored=ignored, reason_index=reason_index, language=language)


def member_columns(headers: Sequence[str]) -> Columns:
    columns = map_columns(headers, MEMBER_COLUMNS)
    if not any(name in columns.index for name in MEMBER_KEY_FIELDS):
        raise TableError(_("A member file needs a “会员编号 / external_id” or a “手机号 / phone” column."))
    return columns


def event_columns(headers: Sequence[str]) -> Columns:
    columns = map_columns(headers, EVENT_COLUMNS)
    missing = [EVENT_COLUMNS[name][0] for name in EVENT_REQUIRED_FIELDS if name not in columns.index]
    if missing:
        raise TableError(_("An event file needs these columns: %(columns)s.") % {"columns": ", ".join(missing)})
    return columns


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= char <= "\u9fff" for char in text)


# ---------------------------------------------------------------------------------------------
# Cell normalizers


def cell_text(raw: Cell) -> str:
    """A cell as trimmed text, undoing the apostrophe that spreadsheet-safe exports put before =+-@."""
    if raw is None:
        return ""
    if isinstance(raw, str):
        text = raw.strip()
    elif isinstance(raw, float) and raw.is_integer():
        text = str(int(raw))
    else:
        text = str(raw).strip()
    if text[:1] == "'" and text[1:2] in ("=", "+", "-", "@"):
        return text[1:]
    return text


def normalize_text(raw: Cell, max_length: int | None = None) -> Normalized:
    text = raw.strip() if raw.__class__ is str else cell_text(raw)
    if text[:1] == "'":
        text = cell_text(text)
    if not text:
        return None, None
    if max_length is not None and len(text) > max_length:
        return None, _("longer than %(limit)d characters") % {"limit": max_length}
    return text, None


_FULL_WIDTH = {0xFF10 + digit: str(digit) for digit in range(10)}
_PHONE_TRANSLATION = str.maketrans({**_FULL_WIDTH, "＋": "+", **dict.fromkeys(" \t\u3000\xa0-－–—()（）.'", None)})
# phonenumbers' own rule for Chinese mobiles, so the fast path accepts exactly what it would.
_CN_MOBILE = re.compile(phonenumbers.PhoneMetadata.metadata_for_region("CN").mobile.national_number_pattern)


def normalize_phone(raw: Cell) -> Normalized:
    """A phone number in E.164 (+8613800138000); default region China."""
    if raw is None or raw == "":
        return None, None
    if isinstance(raw, float):
        if not raw.is_integer():
            return None, _("not a phone number")
        raw = int(raw)
    text = str(raw)
    # Most files hold plain 11-digit mobiles or E.164 already: no translation needed.
    if text.isascii() and (text.isdigit() or (text.startswith("+86") and text[3:].isdigit())):
        compact = text
    else:
        compact = text.translate(_PHONE_TRANSLATION)
    if not compact:
        return None, None
    if compact.startswith("+86"):
        national = compact[3:]
    elif compact.startswith("0086"):
        national = compact[4:]
    elif len(compact) == 13 and compact.startswith("86"):
        national = compact[2:]
    else:
        national = compact
    if len(national) == 11 and _CN_MOBILE.fullmatch(national):
        return "+86" + national, None
    try:
        number = phonenumbers.parse(compact, "CN")
    except phonenumbers.NumberParseException:
        return None, _("not a phone number")
    if not phonenumbers.is_valid_number(number):
        return None, _("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


_DATE_TIME = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:(?:\s+|T)(\d{1,2})[:：](\d{1,2})(?:[:：](\d{1,2})(?:\.(\d{1,6}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?"
)
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
# Five digits: 10000 is 1927-05-18, so a bare year such as "1990" is not taken for a serial.
_EXCEL_SERIAL = re.compile(r"\d{5}(?:\.\d+)?")
_EXCEL_EPOCH = datetime(1899, 12, 30)  # serial 1 is 1900-01-01 with Excel's 1900 leap-year bug
_DATE_ERROR = _("not a date (use 2024-01-31, 2024/1/31, 2024.1.31, 20240131 or 2024年1月31日)")


def normalize_date(raw: Cell, *, today: date | None = None) -> Normalized:
    """A calendar date; `today` rejects dates in the future (birthdays)."""
    value, error = _parse_moment(raw)
    if value is None:
        return None, error
    day = value[0].date() if isinstance(value[0], datetime) else value[0]
    if today is not None and day > today:
        return None, _("in the future")
    return day, None


def normalize_datetime(raw: Cell, *, tz: tzinfo) -> Normalized:
    """An aware datetime; times without a zone are wall-clock times in `tz`, dates are midnight."""
    value, error = _parse_moment(raw)
    if value is None:
        return None, error
    moment, offset = value
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=offset or tz)
        return moment, None
    return datetime.combine(moment, time(), tzinfo=tz), None


def _parse_moment(raw: Cell) -> tuple[tuple[date | datetime, tzinfo | None] | None, object]:
    if raw.__class__ is str:
        text = raw.strip()
        return _parse_date_text(text) if text else (None, None)
    if raw is None:
        return None, None
    if isinstance(raw, datetime):
        return (raw, None), None
    if isinstance(raw, date):
        return (raw, None), None
    if isinstance(raw, bool):
        return None, _DATE_ERROR
    if isinstance(raw, int | float):
        return _from_number(raw)
    text = raw.strip() if isinstance(raw, str) else str(raw)
    if not text:
        return None, None
    return _parse_date_text(text)


def _parse_date_text(text: str) -> tuple[tuple[date | datetime, tzinfo | None] | None, object]:
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        # Zero-padded ISO dates and times, the most common case, parse in C.
        try:
            return (datetime.fromisoformat(text), None), None
        except ValueError:
            pass
    match = _DATE_TIME.fullmatch(text)
    if match:
        year, month, day, hour, minute, second, fraction, zone = match.groups()
        try:
            if hour is None:
                return (date(int(year), int(month), int(day)), _zone(zone)), None
            return (
                datetime(
                    int(year),
                    int(month),
                    int(day),
                    int(hour),
                    int(minute),
                    int(second or 0),
                    int((fraction or "0").ljust(6, "0")),
                ),
                _zone(zone),
            ), None
        except ValueError:
            return None, _("no such date")
    match = _COMPACT_DATE.fullmatch(text)
    if match:
        try:
            return (date(*map(int, match.groups())), None), None
        except ValueError:
            return None, _("no such date")
    if _EXCEL_SERIAL.fullmatch(text):
        return _from_number(float(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None, _DATE_ERROR
    return (moment, None), None


def _zone(zone: str | None) -> tzinfo | None:
    if zone is None:
        return None
    if zone == "Z":
        return UTC
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return dt_timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _from_number(number: int | float) -> tuple[tuple[date | datetime, tzinfo | None] | None, object]:
    """An XLSX number cell: 20240131 written as a number, or an Excel date serial (45322)."""
    if float(number).is_integer() and 10_000_000 <= number <= 99_999_999:
        return _parse_date_text(str(int(number)))
    if not 10_000 <= number < 2_958_466:  # Excel's last date is 9999-12-31
        return None, _DATE_ERROR
    moment = _EXCEL_EPOCH + timedelta(days=float(number))
    if float(number).is_integer():
        return (moment.date(), None), None
    return (moment.replace(microsecond=0), None), None


# Spellings staff use beyond our values and the labels the admin shows in each of its languages.
CHOICE_ALIASES: dict[type, dict[str, tuple[str, ...]]] = {
    Gender: {
        Gender.MALE: ("男", "男性", "男士", "先生", "m", "man"),
        Gender.FEMALE: ("女", "女性", "女士", "f", "woman"),
        Gender.UNKNOWN: ("未知", "保密", "不详", "其他", "u", "other"),
    },
    Channel: {
        Channel.WECOM: ("企业微信", "企微", "wechat work", "weixin work"),
        Channel.COMMUNITY: ("社群", "社群群聊", "微信群", "群聊", "community"),
        Channel.MINI_PROGRAM: ("小程序", "微信小程序", "miniprogram", "mini program", "mini-program"),
        Channel.APP: ("应用", "app端"),
        Channel.STORE: ("门店", "线下门店", "线下", "store", "pos", "store/pos"),
        Channel.ONLINE_SHOP: ("网店", "线上商城", "商城", "电商", "天猫", "淘宝", "京东", "online shop", "online"),
        Channel.REFERRAL: ("推荐", "转介绍", "老带新", "邀请"),
        Channel.OTHER: ("其他", "其它"),
    },
    EventKind: {
        EventKind.PURCHASE: ("购买", "消费", "下单", "订单"),
        EventKind.REFUND: ("退款", "退货"),
        EventKind.CHECK_IN: ("签到", "打卡", "check-in", "checkin"),
        EventKind.INTERACTION: ("互动",),
        EventKind.INVITE: ("邀请", "邀请好友"),
        EventKind.UGC: ("ugc", "用户内容", "晒单", "内容投稿"),
        EventKind.COMPLAINT: ("投诉",),
        EventKind.GROUP_JOIN: ("入群", "加群", "进群"),
        EventKind.GROUP_EXIT: ("退群", "退出群"),
        EventKind.MESSAGE_READ: ("已读", "阅读消息", "消息已读"),
    },
    InteractionKind: {
        InteractionKind.VIEW: ("浏览", "查看"),
        InteractionKind.LIKE: ("点赞",),
        InteractionKind.COMMENT: ("评论",),
        InteractionKind.SHARE: ("分享", "转发"),
        InteractionKind.LIVE_WATCH: ("看直播", "直播观看", "观看直播", "live watch"),
        InteractionKind.ARTICLE_READ: ("阅读文章", "文章阅读", "article read"),
    },
}


@cache
def choice_labels(enum: type) -> dict[str, str]:
    """Lower-cased spellings of an enum's choices -> their values.

    Built on first use rather than at import, and from every language in settings.LANGUAGES,
    so a file in English labels imports the same whatever language the admin is shown in.
    """
    mapping = {}
    for value, label in enum.choices:
        mapping[value.lower()] = value
        for language, _name in settings.LANGUAGES:
            with translation.override(language):
                mapping[str(label).lower()] = value
    for value, aliases in CHOICE_ALIASES[enum].items():
        for alias in aliases:
            mapping[alias.lower()] = str(value)
    return mapping


def normalize_choice(raw: Cell, labels: dict[str, str]) -> Normalized:
    text = cell_text(raw)
    if not text:
        return None, None
    value = labels.get(text.lower())
    if value is None:
        return None, _("unknown value; use one of: %(values)s") % {"values": ", ".join(sorted(set(labels.values())))}
    return value, None


def normalize_gender(raw: Cell) -> Normalized:
    return normalize_choice(raw, choice_labels(Gender))


def normalize_channel(raw: Cell) -> Normalized:
    return normalize_choice(raw, choice_labels(Channel))


_TRUE = frozenset({"1", "是", "y", "yes", "true", "t", "√", "✓", "退订", "拒收"})
_FALSE = frozenset({"0", "否", "n", "no", "false", "f", "×"})


def normalize_flag(raw: Cell) -> Normalized:
    if isinstance(raw, bool):
        return raw, None
    text = cell_text(raw).lower()
    if not text:
        return None, None
    if text in _TRUE:
        return True, None
    if text in _FALSE:
        return False, None
    return None, _("use 是/否 or yes/no")


# A strict subset of what Django's EmailValidator accepts, checked first because it is much cheaper.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def normalize_email(raw: Cell) -> Normalized:
    text = cell_text(raw)
    if not text:
        return None, None
    if len(text) <= 254 and _PLAIN_EMAIL.fullmatch(text):
        return text, None
    try:
        validate_email(text)
    except ValidationError:
        return None, _("not an e-mail address")
    return text, None


_MONEY_NOISE = str.maketrans(dict.fromkeys("¥￥元,， \u3000", None))
_AMOUNT_LIMIT = Decimal("10000000000")  # MemberEvent.amount has 12 digits, 2 after the point


def normalize_amount(raw: Cell) -> Normalized:
    """Yuan as a Decimal with at most 2 decimal places, never negative."""
    if raw is None or raw == "":
        return None, None
    if isinstance(raw, bool):
        return None, _("not an amount")
    if isinstance(raw, float):
        raw = repr(raw)  # the shortest text that reads back as this float: 12.3, not 12.2999…
    text = str(raw).translate(_MONEY_NOISE)
    if not text:
        return None, None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None, _("not an amount")
    if not amount.is_finite():
        return None, _("not an amount")
    if amount < 0:
        return None, _("must not be negative (record a refund instead)")
    if amount.as_tuple().exponent < -2 and amount != amount.quantize(Decimal("0.01")):
        return None, _("at most 2 decimal places")
    if amount >= _AMOUNT_LIMIT:
        return None, _("too large")
    return amount.quantize(Decimal("0.01")), None


def normalize_payload(raw: Cell) -> Normalized:
    text = cell_text(raw)
    if not text:
        return None, None
    try:
        payload = json.loads(text)
    except ValueError:
        return None, _("not valid JSON")
    if not isinstance(payload, dict):
        return None, _('must be a JSON object, e.g. {"sku": "A1"}')
    return payload, None


# ---------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True, slots=True)
class CellError:
    line: int
    column: str
    value: str
    reason: str

    def as_dict(self) -> dict:
        return {"line": self.line, "column": self.column, "value": self.value, "reason": self.reason}


# The order of the values in a normalized member row (after its line number).
MEMBER_FIELDS = (
    "external_id",
    "phone",
    "name",
    "email",
    "gender",
    "birthday",
    "city",
    "channel",
    "joined_at",
    "sms_opt_out",
    "email_opt_out",
    "wecom_opt_out",
    "notes",
)
EVENT_FIELDS = ("member", "kind", "sub_kind", "occurred_at", "amount", "source", "external_id", "payload")


@dataclass
class ParsedRows:
    """Normalized rows `(line, value, value, …)` in file order, and the errors of the others."""

    rows: list[tuple] = field(default_factory=list)
    errors: list[CellError] = field(default_factory=list)
    total: int = 0


ProgressCallback = Callable[[int], None]
# Rows are normalized a chunk at a time, column by column: zip(*rows) transposes in C, each
# column is one map() over a normalizer, and the raw cells of a chunk are freed before the next.
CHUNK_ROWS = 2_000
# Columns with few distinct values (gender, city, dates…) remember their results; the memo is
# emptied when it grows past this many values so that memory stays bounded.
MEMO_LIMIT = 50_000


@dataclass(frozen=True, slots=True)
class _Step:
    position: int
    label: str
    normalize: Callable[[Cell], Normalized]
    required: bool
    memo: dict | None


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One chunk's values by field name, and its errors by row index within the chunk."""

    lines: list[int]
    values: dict[str, list]
    errors: dict[int, list[CellError]]

    def add_error(self, index: int, column: str, value: str, reason) -> None:
        self.errors.setdefault(index, []).append(CellError(self.lines[index], column, value, str(reason)))


def _plan(
    columns: Columns,
    normalizers: dict[str, Callable[[Cell], Normalized]],
    *,
    required: Sequence[str] = (),
    memoized: Sequence[str] = (),
) -> dict[str, _Step]:
    return {
        name: _Step(
            columns.index[name], columns.labels[name], normalize, name in required, {} if name in memoized else None
        )
        for name, normalize in normalizers.items()
        if name in columns.index
    }


def _parse(
    table: Table,
    fields: Sequence[str],
    plan: dict[str, _Step],
    check: Callable[[_Chunk], None],
    on_progress: ProgressCallback | None,
) -> ParsedRows:
    """Normalize every row through `plan`; `check(chunk)` adds the rules that span several cells."""
    with _cyclic_gc_paused():
        return _parse_chunks(table, fields, plan, check, on_progress)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Parsing allocates millions of small tuples and keeps none in cycles; the cyclic collector
    would scan the growing result over and over (about a third of the time on 100,000 rows)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse_chunks(
    table: Table,
    fields: Sequence[str],
    plan: dict[str, _Step],
    check: Callable[[_Chunk], None],
    on_progress: ProgressCallback | None,
) -> ParsedRows:
    parsed = ParsedRows()
    required_reason = str(_("required"))
    width = max([len(table.headers), *(step.position + 1 for step in plan.values())])
    padding = (None,) * width
    order = {step.label: step.position for step in plan.values()}
    source = table.rows()
    while chunk := list(islice(source, CHUNK_ROWS)):
        size = len(chunk)
        lines = [line for line, _cells in chunk]
        # Every row is cut or padded to the same width, so zip(*rows) gives whole columns.
        cells_by_row = [
            cells[:width] if len(cells) >= width else (*cells, *padding[len(cells) :]) for _, cells in chunk
        ]
        columns = list(zip(*cells_by_row, strict=True))
        current = _Chunk(lines=lines, values={}, errors={})
        for name in fields:
            step = plan.get(name)
            if step is None:
                current.values[name] = [None] * size
                continue
            raws = columns[step.position]
            memo, normalize = step.memo, step.normalize
            if memo is None:
                results = list(map(normalize, raws))
            else:
                if len(memo) > MEMO_LIMIT:
                    memo.clear()
                remembered = memo.get
                # A result is a non-empty tuple, so `or` falls through only on a miss.
                results = [remembered(raw) or memo.setdefault(raw, normalize(raw)) for raw in raws]
            values = list(map(itemgetter(0), results))
            errors = list(map(itemgetter(1), results))
            if errors.count(None) != size:
                for index, error in enumerate(errors):
                    if error is not None:
                        current.add_error(index, step.label, cell_text(raws[index]), error)
            if step.required and None in values:
                for index, value in enumerate(values):
                    if value is None and errors[index] is None:
                        current.add_error(index, step.label, "", required_reason)
            current.values[name] = values
        check(current)
        rows = zip(lines, *(current.values[name] for name in fields), strict=True)
        if current.errors:
            for index, row in enumerate(rows):
                row_errors = current.errors.get(index)
                if row_errors is None:
                    parsed.rows.append(row)
                else:
                    parsed.errors.extend(sorted(row_errors, key=lambda error: order[error.column]))
        else:
            parsed.rows.extend(rows)
        parsed.total += size
        if on_progress is not None:
            on_progress(parsed.total)
    return parsed


def parse_member_rows(
    table: Table, columns: Columns, *, tz: tzinfo, today: date, on_progress: ProgressCallback | None = None
) -> ParsedRows:
    """Normalize every row of a member file into MEMBER_FIELDS order; blank cells are None."""
    normalizers = {
        "external_id": lambda raw: normalize_text(raw, 64),
        "phone": normalize_phone,
        "name": lambda raw: normalize_text(raw, 100),
        "email": normalize_email,
        "gender": normalize_gender,
        "birthday": lambda raw: normalize_date(raw, today=today),
        "city": lambda raw: normalize_text(raw, 64),
        "channel": normalize_channel,
        "joined_at": lambda raw: normalize_datetime(raw, tz=tz),
        "sms_opt_out": normalize_flag,
        "email_opt_out": normalize_flag,
        "wecom_opt_out": normalize_flag,
        "notes": normalize_text,
    }
    plan = _plan(columns, normalizers, memoized=MEMBER_FIELDS[4:])
    key_label = columns.labels.get("external_id") or columns.labels["phone"]
    missing_key = _("needs a member number or a phone")

    def check(chunk: _Chunk) -> None:
        for index, (number, phone) in enumerate(zip(chunk.values["external_id"], chunk.values["phone"], strict=True)):
            if number is None and phone is None and index not in chunk.errors:
                chunk.add_error(index, key_label, "", missing_key)

    return _parse(table, MEMBER_FIELDS, plan, check, on_progress)


def parse_event_rows(
    table: Table, columns: Columns, *, tz: tzinfo, on_progress: ProgressCallback | None = None
) -> ParsedRows:
    """Normalize every row of an event file into EVENT_FIELDS order."""
    normalizers = {
        "member": lambda raw: normalize_text(raw, 64),
        "kind": lambda raw: normalize_choice(raw, choice_labels(EventKind)),
        "sub_kind": lambda raw: normalize_text(raw, 32),
        "occurred_at": lambda raw: normalize_datetime(raw, tz=tz),
        "amount": normalize_amount,
        "source": lambda raw: normalize_text(raw, 32),
        "external_id": lambda raw: normalize_text(raw, 64),
        "payload": normalize_payload,
    }
    plan = _plan(
        columns,
        normalizers,
        required=EVENT_REQUIRED_FIELDS,
        memoized=("kind", "sub_kind", "occurred_at", "amount", "source"),
    )
    labels = columns.labels
    needs_amount = (EventKind.PURCHASE, EventKind.REFUND)

    def check(chunk: _Chunk) -> None:
        sub_kinds, amounts = chunk.values["sub_kind"], chunk.values["amount"]
        for index, kind in enumerate(chunk.values["kind"]):
            if index in chunk.errors:
                continue
            if kind == EventKind.INTERACTION:
                # An interaction's sub-kind is one of ours; other kinds may carry free text.
                sub_kind, error = normalize_choice(sub_kinds[index], choice_labels(InteractionKind))
                if sub_kind is None:
                    reason = error or _("an interaction needs a sub-kind")
                    chunk.add_error(index, labels.get("sub_kind") or labels["kind"], sub_kinds[index] or "", reason)
                sub_kinds[index] = sub_kind
            elif kind in needs_amount and amounts[index] is None:
                reason = _("a purchase or refund needs an amount")
                chunk.add_error(index, labels.get("amount") or labels["kind"], "", reason)

    return _parse(table, EVENT_FIELDS, plan, check, on_progress)


# ---------------------------------------------------------------------------------------------
# The invalid-rows file


_FORMULA_START = ("=", "+", "-", "@")
_SIGNED_NUMBER = re.compile(r"[+-][\d\s().-]*")


def csv_safe(text: str) -> str:
    """Keep a spreadsheet from running a cell as a formula; signed numbers and phones stay as they are."""
    if text.startswith(_FORMULA_START) and not _SIGNED_NUMBER.fullmatch(text):
        return "'" + text
    return text


def invalid_rows_file(table: Table, columns: Columns, reasons: dict[int, str]) -> bytes:
    """The rows at `reasons`' lines, in the upload's own format and columns, plus a reason column.

    Importing it again after correcting the cells works: the reason column is ignored on import.
    """
    headers = list(table.headers)
    reason_index = columns.reason_index
    if reason_index is None:
        reason_index = len(headers)
        headers.append(REASON_HEADERS[columns.language])
    selected = []
    for line, cells in table.rows():
        reason = reasons.get(line)
        if reason is not None:
            row = list(cells) + [None] * (len(headers) - len(cells))
            row[reason_index] = reason
            selected.append(row)
    if table.format == "xlsx":
        return _xlsx_bytes(headers, selected)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(headers)
    for row in selected:
        writer.writerow([csv_safe(cell_text(cell)) for cell in row])
    # With a BOM, Excel opens UTF-8 CSV files with Chinese text correctly.
    return buffer.getvalue().encode("utf-8-sig")


def _xlsx_bytes(headers: list[str], rows: list[list[Cell]]) -> bytes:
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append(headers)
    for row in rows:
        cells = []
        for value in row:
            cell = openpyxl.cell.WriteOnlyCell(sheet, value=value)
            if isinstance(value, str):
                cell.data_type = "s"  # text starting with "=" stays text, never a formula
            elif isinstance(value, datetime | date):
                cell.number_format = "yyyy-mm-dd hh:mm:ss" if isinstance(value, datetime) else "yyyy-mm-dd"
            cells.append(cell)
        sheet.append(cells)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
