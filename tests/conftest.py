import os

import pytest
from django.conf import settings


def pytest_collection_modifyitems(config, items):
    """Tests marked `redis` or `postgres` skip only when that optional service is not configured.

    Transactional tests truncate every table when they finish, which also wipes the rows that
    data migrations install (roles, settings rows, tiers, channels, beat schedules). Each one
    therefore gets serialized rollback: the migrated contents are reloaded before it starts.
    """
    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    for item in items:
        marker = item.get_closest_marker("django_db")
        transactional = (marker is not None and marker.kwargs.get("transaction")) or (
            "transactional_db" in getattr(item, "fixturenames", ())
        )
        if transactional:
            kwargs = {**(marker.kwargs if marker else {}), "transaction": True, "serialized_rollback": True}
            item.add_marker(pytest.mark.django_db(*(marker.args if marker else ()), **kwargs), append=False)
        if "redis" in item.keywords and not os.environ.get("REDIS_URL"):
            item.add_marker(pytest.mark.skip(reason="REDIS_URL is not set"))
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(pytest.mark.skip(reason="DATABASE_URL does not point at PostgreSQL"))


@pytest.fixture
def operator(db):
    from tests.factories import UserFactory

    return UserFactory(username="operator", roles=["Operator"])


@pytest.fixture
def supervisor(db):
    from tests.factories import UserFactory

    return UserFactory(username="supervisor", roles=["Supervisor"])


@pytest.fixture
def auditor(db):
    from tests.factories import UserFactory

    return UserFactory(username="auditor", roles=["Auditor"])
