"""The OpenAPI contract: served at /api/schema/, documented locally, and honoured by every endpoint.

schemathesis generates requests from the schema and sends them in-process through the WSGI
application (real URLs, middleware, authentication with a real key); every response must be a
non-5xx that the schema declares, with the declared content type and body.
"""

import re

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from crm.models import Scope
from crm.services import partner_api_key_create
from tests.factories import MemberFactory
from tests.factories.loyalty import EarnFactory

pytestmark = pytest.mark.django_db

MAX_EXAMPLES = 20
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_the_schema_is_served_and_lists_every_endpoint():
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == {
        "/api/v1/members/",
        "/api/v1/members/upsert/",
        "/api/v1/members/{external_id}/",
        "/api/v1/members/{external_id}/points/",
        "/api/v1/members/{external_id}/points/history/",
        "/api/v1/events/batch/",
        "/api/v1/points/earn/",
        "/api/v1/points/redeem/",
        "/api/v1/points/reverse/",
        "/api/v1/complaints/",
        "/api/v1/tiers/",
        "/api/v1/badges/",
        "/api/v1/rewards/",
        "/api/v1/rewards/redeem/",
        "/api/v1/coupons/issue/",
        "/api/v1/coupons/validate/",
        "/api/v1/coupons/redeem/",
        "/api/v1/deliveries/receipts/{channel}/",
        "/api/v1/ugc/submissions/",
        "/api/v1/ugc/submissions/submit/",
        "/api/v1/ugc/polls/",
        "/api/v1/ugc/polls/{poll_id}/votes/",
        "/api/v1/ugc/polls/{poll_id}/results/",
    }
    assert "Error" in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "Authorization"
    assert APIClient().get("/api/schema/", {"format": "json"}).json()["paths"] == schema["paths"]


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_docs_load_their_scripts_from_our_own_static_files(path):
    page = APIClient().get(path).content.decode()

    assert "drf_spectacular_sidecar" in page
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page)
    assert assets and not [url for url in assets if url.startswith(("http:", "https:", "//"))]


@pytest.fixture
def in_process_wsgi():
    """The WSGI app, without the per-request connection cleanup that would end the test's transaction
    (Django's own test client disconnects the same handler)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_every_endpoint_honours_the_schema(in_process_wsgi, partner):
    member = MemberFactory(external_id="M1")
    EarnFactory(member=member, amount=1_000, idempotency_key="api:p0:seed")
    _, secret = partner_api_key_create(partner=partner, name="fuzz", scopes=list(Scope.values))
    headers = {"Authorization": f"Api-Key {secret}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/", in_process_wsgi)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 23

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def honours_the_schema(case):
            case.call_and_validate(headers=headers, checks=CHECKS)
            if case.path_parameters and "external_id" in case.path_parameters:
                # Random ids are all 404s: ask for a member that exists too.
                case.path_parameters["external_id"] = "M1"
                case.call_and_validate(headers=headers, checks=CHECKS)

        honours_the_schema()
