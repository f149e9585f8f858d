"""How a rendered message leaves the building, per channel.

E-mail goes through Django's configured e-mail backend; SMS and WeCom through an HTTP gateway
(JSON POSTed with an HMAC-SHA256 signature); in-app messages are stored for the API to read.
A channel raises RetryableSendError for what may work later (timeouts, 5xx, connection errors)
and PermanentSendError for what never will (4xx, no address).
"""

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMultiAlternatives

from campaigns.models import ChannelConfig, Delivery, InAppMessage, MessageChannel
from campaigns.templating import Rendered

SIGNATURE_HEADER = "X-CRM-Signature"
DELIVERY_HEADER = "X-CRM-Delivery"


class SendError(Exception):
    pass


class RetryableSendError(SendError):
    pass


class PermanentSendError(SendError):
    pass


@dataclass(frozen=True)
class SendResult:
    provider_id: str = ""


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_valid(secret: str, body: bytes, signature: str) -> bool:
    return bool(secret) and hmac.compare_digest(sign(secret, body), signature or "")


def send_email(*, delivery: Delivery, message: Rendered, config: ChannelConfig) -> SendResult:
    if not delivery.member.email:
        raise PermanentSendError("member has no e-mail address")
    email = EmailMultiAlternatives(
        subject=message.subject,
        body=message.text,
        from_email=config.from_email or settings.DEFAULT_FROM_EMAIL,
        to=[delivery.member.email],
        headers={DELIVERY_HEADER: str(delivery.pk)},
    )
    email.attach_alternative(message.body, "text/html")
    try:
        email.send()
    except (OSError, TimeoutError) as error:  # SMTP connection trouble: smtplib errors are OSErrors
        raise RetryableSendError(str(error)) from error
    return SendResult()


def webhook_payload(*, delivery: Delivery, message: Rendered, channel: str) -> dict:
    member = delivery.member
    return {
        "delivery_id": delivery.pk,
        "channel": channel,
        "campaign_id": delivery.campaign_id,
        "member_number": member.external_id or "",
        "phone": str(member.phone) if channel == MessageChannel.SMS and member.phone else "",
        "text": message.text,
    }


def send_webhook(*, delivery: Delivery, message: Rendered, config: ChannelConfig) -> SendResult:
    if not config.url:
        raise RetryableSendError(f"no gateway URL configured for {config.channel}")
    body = json.dumps(
        webhook_payload(delivery=delivery, message=message, channel=config.channel), ensure_ascii=False
    ).encode()
    request = urllib.request.Request(
        config.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign(config.secret, body),
            # The gateway may use it to drop a resend after a worker died mid-request.
            DELIVERY_HEADER: str(delivery.pk),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=config.timeout_seconds) as response:  # noqa: S310
            answer = response.read(64 * 1024)
    except urllib.error.HTTPError as error:
        if error.code >= 500 or error.code == 429:
            raise RetryableSendError(f"gateway answered {error.code}") from error
        raise PermanentSendError(f"gateway answered {error.code}") from error
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise RetryableSendError(f"gateway unreachable: {error}") from error
    try:
        provider_id = str(json.loads(answer or b"{}").get("id", ""))[:128]
    except (ValueError, AttributeError):
        provider_id = ""
    return SendResult(provider_id=provider_id)


def send_in_app(*, delivery: Delivery, message: Rendered, config: ChannelConfig) -> SendResult:
    # get_or_create: a resend after a crash finds the message already stored.
    InAppMessage.objects.get_or_create(
        delivery=delivery, defaults={"member_id": delivery.member_id, "subject": message.subject, "body": message.body}
    )
    return SendResult()


SENDERS = {
    MessageChannel.EMAIL: send_email,
    MessageChannel.SMS: send_webhook,
    MessageChannel.WECOM: send_webhook,
    MessageChannel.IN_APP: send_in_app,
}


def send(*, delivery: Delivery, message: Rendered, config: ChannelConfig) -> SendResult:
    """Send through `config`'s channel: the delivery's own, or its fallback while that is on."""
    return SENDERS[config.channel](delivery=delivery, message=message, config=config)
