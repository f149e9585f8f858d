"""Dispatch through the real channels: Django's locmem e-mail backend, a signed webhook to a local
HTTP gateway (with 500s and retries), in-app messages; and delivery receipts."""

import hashlib
import hmac
import json
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail

from campaigns.channels import DELIVERY_HEADER, SIGNATURE_HEADER, sign
from campaigns.models import (
    CampaignStatus,
    ChannelConfig,
    Delivery,
    DeliveryStatus,
    InAppMessage,
    MessageCategory,
    OutboxSettings,
)
from campaigns.outbox import deliveries_dispatch, deliveries_plan, delivery_receipt_record
from crm.core.exceptions import ApplicationError
from tests.factories.campaigns import SHANGHAI, running_campaign

pytestmark = pytest.mark.django_db
SECRET = "test-secret"


class Gateway:
    """A local SMS/WeCom gateway: records requests and answers with the queued status codes, each
    after the queued delay in seconds (a congested or hanging gateway)."""

    def __init__(self, statuses=(), delays=()):
        self.statuses = list(statuses)
        self.delays = list(delays)
        self.requests: list[tuple] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                if gateway.delays:
                    time.sleep(gateway.delays.pop(0))
                body = self.rfile.read(int(self.headers["Content-Length"]))
                gateway.requests.append((json.loads(body), body, self.headers))  # case-insensitive
                status = gateway.statuses.pop(0) if gateway.statuses else 200
                answer = json.dumps({"id": f"gw-{len(gateway.requests)}"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/send"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _configure(channel: str, url: str, timeout_seconds: int = 5) -> None:
    ChannelConfig.objects.update_or_create(
        channel=channel,
        defaults={"enabled": True, "url": url, "secret": SECRET, "timeout_seconds": timeout_seconds},
    )


def _statuses(campaign) -> list[str]:
    return list(Delivery.objects.filter(campaign=campaign).order_by("member_id").values_list("status", flat=True))


def test_email_goes_through_djangos_backend_with_subject_and_html(members, now):
    campaign = running_campaign(members, channel="email", body="<p>亲爱的{{ member.name }}</p>")
    deliveries_plan(campaign=campaign, now=now)

    result = deliveries_dispatch(now=now)

    assert result.sent == 3
    assert sorted(m.to[0] for m in mail.outbox) == sorted(m.email for m in members)
    message = next(m for m in mail.outbox if m.to == [members[0].email])
    assert message.subject == campaign.name
    assert message.alternatives[0][0] == f"<p>亲爱的{members[0].name}</p>"
    assert message.body == f"亲爱的{members[0].name}"
    assert _statuses(campaign) == [DeliveryStatus.SENT] * 3


def test_dispatching_twice_sends_nothing_twice(members, now):
    campaign = running_campaign(members)
    deliveries_plan(campaign=campaign, now=now)

    deliveries_dispatch(now=now)
    again = deliveries_dispatch(now=now + timedelta(hours=1))

    assert again.handled == 0
    assert len(mail.outbox) == 3
    assert len({m.extra_headers[DELIVERY_HEADER] for m in mail.outbox}) == 3


def test_batches_are_bounded_and_the_dispatcher_works_through_them(members, now):
    OutboxSettings.objects.filter(pk=1).update(batch_size=2)
    deliveries_plan(campaign=running_campaign(members), now=now)

    assert deliveries_dispatch(now=now, max_batches=1).sent == 2
    assert deliveries_dispatch(now=now, max_batches=1).sent == 1


def test_paused_campaigns_and_disabled_channels_wait(members, now):
    paused = running_campaign(members[:1], status=CampaignStatus.PAUSED)
    sms = running_campaign(members[1:], channel="sms")  # SMS is installed disabled until configured
    deliveries_plan(campaign=paused, now=now)
    deliveries_plan(campaign=sms, now=now)

    assert deliveries_dispatch(now=now).handled == 0
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.QUEUED}


def test_a_promotional_message_due_in_the_quiet_hours_waits_for_the_morning(members, now):
    campaign = running_campaign(members)
    deliveries_plan(campaign=campaign, now=now)
    night = datetime(2026, 3, 16, 23, 30, tzinfo=SHANGHAI)

    assert deliveries_dispatch(now=night).deferred == 3
    assert mail.outbox == []
    assert deliveries_dispatch(now=datetime(2026, 3, 17, 8, 0, tzinfo=SHANGHAI)).sent == 3


def test_transactional_messages_go_out_at_night(members, now):
    campaign = running_campaign(members, category=MessageCategory.TRANSACTIONAL)
    night = datetime(2026, 3, 16, 23, 30, tzinfo=SHANGHAI)
    deliveries_plan(campaign=campaign, now=night)

    assert deliveries_dispatch(now=night).sent == 3


def test_in_app_messages_are_stored_for_the_api(members, now):
    campaign = running_campaign(members, channel="in_app")
    deliveries_plan(campaign=campaign, now=now)

    deliveries_dispatch(now=now)

    stored = InAppMessage.objects.get(member=members[0])
    assert stored.body == f"亲爱的{members[0].name}，新品上市"
    assert stored.subject == campaign.name


def test_the_webhook_is_signed_and_a_500_is_retried_with_back_off(members, now):
    campaign = running_campaign(members[:1], channel="sms", body="亲爱的{{ member.name }}，您有新礼包")
    deliveries_plan(campaign=campaign, now=now)
    with Gateway(statuses=[500, 200]) as gateway:
        _configure("sms", gateway.url)

        first = deliveries_dispatch(now=now)
        delivery = Delivery.objects.get(campaign=campaign)
        assert first.retried == 1
        assert delivery.status == DeliveryStatus.QUEUED
        assert delivery.next_attempt_at == now + timedelta(seconds=60)
        assert "500" in delivery.last_error
        assert deliveries_dispatch(now=now + timedelta(seconds=59)).handled == 0  # not yet due
        second = deliveries_dispatch(now=now + timedelta(seconds=60))

    assert second.sent == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.provider_id) == (DeliveryStatus.SENT, 2, "gw-2")
    payload, body, headers = gateway.requests[-1]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    assert headers[DELIVERY_HEADER] == str(delivery.pk)
    assert payload["text"] == f"亲爱的{members[0].name}，您有新礼包"
    assert payload["phone"] == str(members[0].phone)
    assert payload["delivery_id"] == delivery.pk


def test_a_gateway_that_keeps_failing_ends_in_a_visible_failed_state(members, now):
    OutboxSettings.objects.filter(pk=1).update(max_attempts=3)
    campaign = running_campaign(members[:1], channel="wecom")
    deliveries_plan(campaign=campaign, now=now)
    with Gateway(statuses=[503, 502, 500, 200]) as gateway:
        _configure("wecom", gateway.url)
        at = now
        for _attempt in range(3):
            deliveries_dispatch(now=at)
            at += timedelta(days=1)

    delivery = Delivery.objects.get(campaign=campaign)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 3)
    assert len(gateway.requests) == 3
    assert "500" in delivery.last_error


def test_back_off_doubles(members, now):
    campaign = running_campaign(members[:1], channel="wecom")
    deliveries_plan(campaign=campaign, now=now)
    with Gateway(statuses=[500, 500]) as gateway:
        _configure("wecom", gateway.url)
        deliveries_dispatch(now=now)
        deliveries_dispatch(now=now + timedelta(seconds=60))

    delivery = Delivery.objects.get(campaign=campaign)
    assert delivery.next_attempt_at == now + timedelta(seconds=60 + 120)


def test_a_4xx_is_not_retried(members, now):
    campaign = running_campaign(members[:1], channel="wecom")
    deliveries_plan(campaign=campaign, now=now)
    with Gateway(statuses=[400]) as gateway:
        _configure("wecom", gateway.url)
        deliveries_dispatch(now=now)

    assert Delivery.objects.get(campaign=campaign).status == DeliveryStatus.FAILED


def test_an_unreachable_gateway_is_retried(members, now):
    campaign = running_campaign(members[:1], channel="wecom")
    deliveries_plan(campaign=campaign, now=now)
    with Gateway() as gateway:
        url = gateway.url
    _configure("wecom", url)  # the server is closed: connection refused

    assert deliveries_dispatch(now=now).retried == 1


def test_a_gateway_that_times_out_is_retried_with_back_off_then_sends(members, now):
    campaign = running_campaign(members[:1], channel="wecom")
    deliveries_plan(campaign=campaign, now=now)
    with Gateway(delays=[3]) as gateway:  # the first answer comes after the 1 s timeout
        _configure("wecom", gateway.url, timeout_seconds=1)
        first = deliveries_dispatch(now=now)
        delivery = Delivery.objects.get(campaign=campaign)
        assert first.retried == 1
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.QUEUED, 1)
        assert delivery.next_attempt_at == now + timedelta(seconds=60)
        assert delivery.last_error
        second = deliveries_dispatch(now=now + timedelta(seconds=60))

    assert second.sent == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 2)


def _receipt(delivery, status, secret=SECRET):
    body = json.dumps({"delivery_id": delivery.pk, "status": status}).encode()
    return body, sign(secret, body)


def test_receipts_move_a_delivery_forward_only(members, now):
    campaign = running_campaign(members[:1], channel="wecom")
    deliveries_plan(campaign=campaign, now=now)
    with Gateway() as gateway:
        _configure("wecom", gateway.url)
        deliveries_dispatch(now=now)
    delivery = Delivery.objects.get(campaign=campaign)

    for status in ("delivered", "opened", "delivered"):
        body, signature = _receipt(delivery, status)
        delivery_receipt_record(channel="wecom", body=body, signature=signature, now=now)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.OPENED
    assert delivery.delivered_at == now and delivery.opened_at == now


def test_a_receipt_with_a_bad_signature_is_refused(members, now):
    campaign = running_campaign(members[:1], channel="wecom")
    deliveries_plan(campaign=campaign, now=now)
    _configure("wecom", "http://127.0.0.1:9/")
    delivery = Delivery.objects.get(campaign=campaign)
    body, signature = _receipt(delivery, "delivered", secret="wrong")

    with pytest.raises(ApplicationError):
        delivery_receipt_record(channel="wecom", body=body, signature=signature)
    with pytest.raises(ApplicationError):
        delivery_receipt_record(channel="wecom", body=body, signature="")


def test_rows_a_dead_worker_left_sending_go_back_to_the_queue_but_sent_rows_never_do(members, now):
    campaign = running_campaign(members)
    deliveries_plan(campaign=campaign, now=now)
    deliveries_dispatch(now=now)
    sent = Delivery.objects.filter(campaign=campaign).order_by("pk")
    stuck = sent[0]
    Delivery.objects.filter(pk=stuck.pk).update(status=DeliveryStatus.SENDING, claimed_at=now)
    mail.outbox.clear()

    assert deliveries_dispatch(now=now + timedelta(minutes=5)).handled == 0  # may still be in flight
    assert deliveries_dispatch(now=now + timedelta(minutes=11)).sent == 1

    assert [m.extra_headers[DELIVERY_HEADER] for m in mail.outbox] == [str(stuck.pk)]


@pytest.mark.parametrize("delivery_id", ["Infinity", "1e999", str(2**63), "0", "-1"])
def test_a_signed_receipt_with_an_impossible_delivery_id_is_refused_not_a_crash(delivery_id):
    _configure("wecom", "http://127.0.0.1:9/")
    body = f'{{"delivery_id": {delivery_id}, "status": "delivered"}}'.encode()

    with pytest.raises(ApplicationError, match="Malformed receipt"):
        delivery_receipt_record(channel="wecom", body=body, signature=sign(SECRET, body))
