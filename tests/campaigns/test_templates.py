"""Message templates: errors are caught when staff save or submit, never at send time."""

import pytest

from campaigns.models import CampaignStatus
from campaigns.services import campaign_transition, message_template_save
from campaigns.templating import SMS_MAX_CHARS, message_context, render, template_errors
from crm.core.exceptions import ApplicationError
from tests.factories import MemberFactory
from tests.factories.campaigns import CampaignFactory, MessageTemplateFactory, segment_of

pytestmark = pytest.mark.django_db


def _context(name="张三"):
    return {
        "member": {"name": name, "number": "M1", "city": "上海"},
        "campaign": {"name": "春季"},
        "offer": {"points": 100, "coupon": "SPRING", "multiplier": 2},
    }


def test_member_fields_are_filled_in():
    rendered = render(
        channel="sms", subject="", body="亲爱的{{ member.name }}，送您{{ offer.points }}积分", context=_context()
    )

    assert rendered.body == "亲爱的张三，送您100积分"


def test_email_bodies_are_escaped_html_and_sms_bodies_plain_text():
    context = _context(name="<b>李</b>")

    assert render(channel="email", subject="Hi", body="<p>{{ member.name }}</p>", context=context).body == (
        "<p>&lt;b&gt;李&lt;/b&gt;</p>"
    )
    assert render(channel="sms", subject="", body="{{ member.name }}", context=context).body == "<b>李</b>"


@pytest.mark.parametrize(
    ("channel", "subject", "body", "expected"),
    [
        ("sms", "", "亲爱的{{ member.nmae }}", "Unknown variable: member.nmae"),
        ("sms", "", "亲爱的{{ member.phone }}", "Unknown variable: member.phone"),
        ("wecom", "", "{% if member.name %}你好", "Template syntax error"),
        ("wecom", "", "{{ member.name|nosuchfilter }}", "Template syntax error"),
        ("email", "", "<p>hi</p>", "An e-mail needs a subject."),
        ("email", "{{ campain.name }}", "<p>hi</p>", "Unknown variable: campain.name"),
        ("in_app", "", "   ", "The message is empty."),
    ],
)
def test_template_errors_are_reported_in_words_staff_understand(channel, subject, body, expected):
    errors = template_errors(channel=channel, subject=subject, body=body, contexts=[_context()])

    assert any(expected in error for error in errors), errors


def test_an_sms_too_long_once_filled_in_for_a_real_name_is_refused():
    body = "亲" * (SMS_MAX_CHARS - 2) + "{{ member.name }}"

    assert template_errors(channel="sms", subject="", body=body, contexts=[_context(name="李")]) == []
    errors = template_errors(channel="sms", subject="", body=body, contexts=[_context(name="欧阳娜娜")])
    assert "at most 70" in errors[0]


def test_sending_never_fails_on_a_template():
    # Validation is strict; the send-time engine is lenient (a missing value renders empty).
    assert render(channel="sms", subject="", body="你好{{ member.nope }}", context=_context()).body == "你好"


def test_saving_a_broken_template_is_refused():
    template = MessageTemplateFactory.build(campaign=CampaignFactory(), body="{{ member.nmae }}")

    with pytest.raises(ApplicationError, match="member.nmae"):
        message_template_save(template=template)


def test_submit_checks_sms_length_with_a_real_member_of_the_audience(operator):
    long_named = MemberFactory(name="阿卜杜热合曼·买买提")
    campaign = CampaignFactory(channel="sms", segment=segment_of([long_named]))
    MessageTemplateFactory(campaign=campaign, body="亲" * 62 + "{{ member.name }}")

    with pytest.raises(ApplicationError, match="at most 70"):
        campaign_transition(campaign=campaign, action="submit", actor=operator)

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


def test_submit_refuses_a_template_that_was_broken_behind_the_services_back(members, operator):
    campaign = CampaignFactory(segment=segment_of(members))
    MessageTemplateFactory(campaign=campaign, body="{% for %}")

    with pytest.raises(ApplicationError, match="syntax"):
        campaign_transition(campaign=campaign, action="submit", actor=operator)


def test_the_message_context_exposes_only_listed_member_fields(members):
    campaign = CampaignFactory()

    context = message_context(member=members[0], campaign=campaign)

    assert set(context["member"]) == {"name", "number", "city"}
