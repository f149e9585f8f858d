"""Building blocks of the partner REST API: authentication by API key, scopes, throttling per
key, cursor pagination and the one error shape every endpoint returns.

The error shape (docs/API.md, component `Error` in the OpenAPI schema)::

    {"code": "invalid", "message": "Invalid input.", "fields": {"phone": ["…"], "events.3.kind": ["…"]},
     "extra": {}}

`fields` maps the path of each invalid field to its messages (empty when the error is not about
fields); `extra` carries machine-readable details of a refusal (e.g. the balance that was short).
"""

from crm.core.api.auth import (
    STAFF_PERMISSIONS_BY_SCOPE,
    HasScope,
    PartnerAPIKeyAuthentication,
    PartnerKey,
    PartnerKeyThrottle,
    key_store,
    partner_key_forget,
    request_has_scope,
)
from crm.core.api.errors import (
    Conflict,
    ErrorSerializer,
    PayloadTooLarge,
    error_responses,
    exception_handler,
    flatten_errors,
)
from crm.core.api.io import (
    ApiContentNegotiation,
    ApiCursorPagination,
    BoundedDateField,
    BoundedDateTimeField,
    ReadSerializer,
    StrictJSONParser,
    cursor_pagination,
)

__all__ = [
    "STAFF_PERMISSIONS_BY_SCOPE",
    "ApiContentNegotiation",
    "ApiCursorPagination",
    "BoundedDateField",
    "BoundedDateTimeField",
    "Conflict",
    "ErrorSerializer",
    "HasScope",
    "PartnerAPIKeyAuthentication",
    "PartnerKey",
    "PartnerKeyThrottle",
    "PayloadTooLarge",
    "ReadSerializer",
    "StrictJSONParser",
    "cursor_pagination",
    "error_responses",
    "exception_handler",
    "flatten_errors",
    "key_store",
    "partner_key_forget",
    "request_has_scope",
]
