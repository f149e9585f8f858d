import pytest
from celery import current_app

from campaigns.ugc import services
from campaigns.ugc.models import SubmissionKind
from campaigns.ugc.services import submissions as submission_services
from loyalty.models import EarnRule, EarnRuleKind

# The partner API's fixtures (a partner, keys with chosen scopes, a fresh key cache per test).
from tests.api.conftest import _fresh_cache, make_client, partner  # noqa: F401
from tests.factories import MemberFactory


@pytest.fixture(autouse=True)
def _fresh_word_matcher():
    # The compiled word list is kept per process; each test starts from its own database's list.
    submission_services._matcher_cache["version"] = None
    yield
    submission_services._matcher_cache["version"] = None


@pytest.fixture
def eager_tasks():
    """Celery tasks run inline, so the earning that approval triggers (after commit) runs too."""
    before = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = before


@pytest.fixture
def ugc_rule(db):
    """The earn rule that pays approved content: 20 points per approved submission."""
    return EarnRule.objects.create(name="UGC", kind=EarnRuleKind.UGC, sub_kind="approved", points=20)


@pytest.fixture
def member(db):
    return MemberFactory()


def submit(member, *, kind=SubmissionKind.TEXT, text="今天的新品很好喝", source="shop", **fields):
    submission, _created = services.submission_create(member=member, kind=kind, text=text, source=source, **fields)
    return submission
