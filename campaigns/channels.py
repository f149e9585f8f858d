"""How a rendered message leaves the building, per channel.

E-mail goes through Django's configured e-mail backend; SMS and WeCom through an HTTP gateway
(JSON POSTed with an HMAC-SHA256 signature); in-app messages are stored for the API to read.
A channel raises RetryableSendError for what may work later (timeouts, 5xx, connection errors)
and PermanentSendError for what never will (4xx, no address).
"""

import hashlib
import hmac
import http.client
import json
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

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


class _KeepAlive(threading.local):
    """One persistent HTTP connection per gateway and thread: a dispatcher sends thousands of
    messages to the same gateway, and a new TCP connection per message costs as much as the rest."""

    def __init__(self):
        self.connections: dict[tuple, http.client.HTTPConnection] = {}

    def post(self, url: str, body: bytes, headers: dict, timeout: float) -> tuple[int, bytes]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PermanentSendError(f"not an http(s) gateway URL: {parts.scheme}")
        key = (parts.scheme, parts.netloc, timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):
            connection = self.connections.get(key)
            if connection is None:
                kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
                connection = self.connections[key] = kind(parts.netloc, timeout=timeout)
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                return response.status, response.read(64 * 1024)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the gateway had closed: once more on a new one (the
                # gateway drops a true duplicate by the X-CRM-Delivery header).
                connection.close()
                self.connections.pop(key, None)
                if attempt == 2:
                    raise
            except (OSError, http.client.HTTPException):
                connection.close()
                self.connections.pop(key, None)
                raise
        raise AssertionError("unreachable")


_keep_alive = _KeepAlive()


def send_webhook(*, delivery: Delivery, message: Rendered, config: ChannelConfig) -> SendResult:
    if not config.url:
        raise RetryableSendError(f"no gateway URL configured for {config.channel}")
    body = json.dumps(
        webhook_payload(delivery=delivery, message=message, channel=config.channel), ensure_ascii=False
    ).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        SIGNATURE_HEADER: sign(config.secret, body),
        # The gateway may use it to drop a resend after a worker died mid-request.
        DELIVERY_HEADER: str(delivery.pk),
    }
    try:
        status, answer = _keep_alive.post(config.url, body, headers, config.timeout_seconds)
    except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out, garbled
        raise RetryableSendError(f"gateway unreachable: {error}") from error
    if status >= 500 or status == 429:
        raise RetryableSendError(f"gateway answered {status}")
    if status >= 400:
        raise PermanentSendError(f"gateway answered {status}")
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
