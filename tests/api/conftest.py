import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from crm.core.api import key_store
from crm.models import Partner, Scope
from crm.services import partner_api_key_create
from members.api import views as member_views

ALL_SCOPES = list(Scope.values)


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Throttle counters and key snapshots live in the cache, which outlives a test's database.
    cache.clear()
    key_store.clear_local()
    member_views._entry_tier_cache[0] = 0.0  # the entry tier is read again from this test's database
    yield
    cache.clear()
    key_store.clear_local()


@pytest.fixture
def partner(db):
    return Partner.objects.create(name="Shop", rate_limit_per_minute=0)


@pytest.fixture
def make_client(partner):
    """make_client(scopes=[...]) → an APIClient sending a fresh key of `partner` with those scopes."""

    def make(scopes=ALL_SCOPES, *, for_partner=None, **key_options):
        api_key, secret = partner_api_key_create(
            partner=for_partner or partner, name="test", scopes=list(scopes), **key_options
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
        client.api_key, client.secret = api_key, secret
        return client

    return make


@pytest.fixture
def api(make_client):
    """A client whose key has every scope."""
    return make_client()


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "fields", "extra"}, body
    assert body["code"] == code, body
    assert body["message"]
    return body
