"""Request bodies, fields, content negotiation, output serializers and pagination of the API."""

import json
import math
import re
from datetime import UTC, datetime

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import JSONParser

from crm.core.api.errors import PayloadTooLarge

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
