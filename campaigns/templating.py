"""Message templates: the variables they may use, strict validation, and rendering.

Templates are Django template syntax over a small, fixed context (member, campaign, offer), never
the model objects themselves, so a template can neither reach a phone number nor call a method.
Validation renders with a strict engine (an unknown variable raises) against sample members;
sending renders with a lenient one, so a message is never lost to a template at send time.
"""

from dataclasses import dataclass
from functools import lru_cache

from django.template import Context, Engine, TemplateSyntaxError
from django.utils.html import strip_tags
from django.utils.translation import gettext_lazy as _

SMS_MAX_CHARS = 70
SUBJECT_CHANNELS = frozenset({"email", "in_app"})
HTML_CHANNELS = frozenset({"email"})


class UnknownVariable(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _StrictMissing(str):
    """Django formats `string_if_invalid % name` when it holds "%s"; raising there makes any
    unknown variable outside an {% if %} an error at validation time."""

    def __mod__(self, name):
        raise UnknownVariable(str(name))


_STRICT = {
    True: Engine(autoescape=True, string_if_invalid=_StrictMissing("%s")),
    False: Engine(autoescape=False, string_if_invalid=_StrictMissing("%s")),
}
_LENIENT = {True: Engine(autoescape=True), False: Engine(autoescape=False)}


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str

    @property
    def text(self) -> str:
        """The body as plain text (e-mail's text part)."""
        return strip_tags(self.body)


def member_context(member) -> dict:
    return {
        "name": member.name or "",
        "number": member.external_id or "",
        "city": member.city or "",
    }


def message_context(*, member, campaign, step=None) -> dict:
    """The variables of a message; a journey step's offer replaces the campaign's."""
    offer = step if step is not None else campaign
    batch = offer.coupon_batch if offer.coupon_batch_id else None
    return {
        "member": member_context(member),
        "campaign": {"name": campaign.name},
        "offer": {
            "points": offer.offer_points,
            "coupon": batch.name if batch is not None else "",
            "multiplier": campaign.offer_multiplier,
        },
    }


@lru_cache(maxsize=256)
def _compiled(text: str, *, strict: bool, html: bool):
    """A template compiled once per text: the dispatcher renders the same one for every member."""
    return (_STRICT if strict else _LENIENT)[html].from_string(text)


def render(*, channel: str, subject: str, body: str, context: dict, strict: bool = False) -> Rendered:
    html = channel in HTML_CHANNELS
    rendered_subject = ""
    if channel in SUBJECT_CHANNELS and subject:
        rendered_subject = _compiled(subject, strict=strict, html=False).render(Context(context)).strip()
    rendered_body = _compiled(body, strict=strict, html=html).render(Context(context, autoescape=html)).strip()
    return Rendered(subject=rendered_subject, body=rendered_body)


def template_errors(*, channel: str, subject: str, body: str, contexts: list[dict]) -> list[str]:
    """What is wrong with a template, as messages for staff; empty when it is fine.

    Each context stands for a member (a real one from the audience and a long-named sample), so
    the SMS length is checked with real names, not only with the template text.
    """
    errors: list[str] = []
    if not body.strip():
        return [str(_("The message is empty."))]
    if channel == "email" and not subject.strip():
        errors.append(str(_("An e-mail needs a subject.")))
    for context in contexts:
        try:
            rendered = render(channel=channel, subject=subject, body=body, context=context, strict=True)
        except TemplateSyntaxError as error:
            return [*errors, str(_("Template syntax error: %(error)s") % {"error": error})]
        except UnknownVariable as error:
            return [*errors, str(_("Unknown variable: %(name)s") % {"name": error.name})]
        if channel == "sms" and len(rendered.body) > SMS_MAX_CHARS:
            errors.append(
                str(
                    _("The SMS has %(count)d characters once filled in for %(who)s; at most %(max)d fit.")
                    % {"count": len(rendered.body), "who": context["member"]["name"] or "-", "max": SMS_MAX_CHARS}
                )
            )
            break
    return errors
