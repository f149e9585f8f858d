"""schemathesis on the member-content endpoints, with a member and an open poll that exist, so
that generated requests reach the services and not only the 404 of unknown ids."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from campaigns.ugc import services
from campaigns.ugc.models import Poll, PollOption, PollVote, Submission
from crm.models import Scope
from crm.services import partner_api_key_create
from tests.api.test_schema import CHECKS, MAX_EXAMPLES, in_process_wsgi  # noqa: F401  (fixture)
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def test_the_member_content_endpoints_honour_the_schema(in_process_wsgi, partner):  # noqa: F811
    MemberFactory(external_id="M1")
    poll = Poll.objects.create(title="口味")
    option = PollOption.objects.create(poll=poll, label="A")
    PollOption.objects.create(poll=poll, label="B")
    services.poll_open(poll=poll)
    _, secret = partner_api_key_create(partner=partner, name="fuzz", scopes=[Scope.UGC_READ, Scope.UGC_WRITE])
    headers = {"Authorization": f"Api-Key {secret}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/", in_process_wsgi)
    operations = [result.ok() for result in schema.get_all_operations() if "/ugc/" in result.ok().path]
    assert len(operations) == 5

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
            if case.path_parameters and "poll_id" in case.path_parameters:
                case.path_parameters["poll_id"] = poll.pk
            # Half the cases get a real member, option and some text; the rest stay as generated.
            if case.query and "member_external_id" in case.query and len(str(case.query)) % 2:
                case.query["member_external_id"] = "M1"
            if isinstance(case.body, dict) and "member_external_id" in case.body and len(str(case.body)) % 2:
                case.body["member_external_id"] = "M1"
                if "option_id" in case.body:
                    case.body["option_id"] = option.pk
            case.call_and_validate(headers=headers, checks=CHECKS)

        honours_the_schema()

        # And one valid request each, so that the success responses are checked against the schema too.
        valid = {
            "/api/v1/ugc/submissions/submit/": {
                "body": {"member_external_id": "M1", "kind": "text", "text": "好喝"},
                "media_type": "application/json",
            },
            "/api/v1/ugc/polls/{poll_id}/votes/": {
                "body": {"member_external_id": "M1", "option_id": option.pk},
                "media_type": "application/json",
            },
            "/api/v1/ugc/submissions/": {"query": {"member_external_id": "M1"}},
        }.get(operation.path, {})
        path_parameters = {"poll_id": poll.pk} if "{poll_id}" in operation.path else None
        response = operation.Case(path_parameters=path_parameters, **valid).call_and_validate(
            headers=headers, checks=CHECKS
        )
        assert response.status_code in (200, 201), (operation.path, response.text)

    assert Submission.objects.exists() and PollVote.objects.exists()
