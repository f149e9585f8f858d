"""One member at a time, by the partner's id: the path of the REST API.

Files of members go through members_import (set-based); this is its single-row counterpart with
the same rules: a member is matched on external_id, only the fields given are written, and a
phone that belongs to another member is refused.
"""

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from members.models import Member

# What a partner may set. Rollups (orders, spend, last active…) come from events only.
MEMBER_PROFILE_FIELDS = frozenset(
    {
        "name",
        "phone",
        "email",
        "gender",
        "birthday",
        "city",
        "channel",
        "joined_at",
        "sms_opt_out",
        "email_opt_out",
        "wecom_opt_out",
    }
)


@transaction.atomic
def member_upsert(*, external_id: str, profile: dict) -> tuple[Member, bool]:
    """Create the member with this external_id, or update the given profile fields of it.

    Returns (member, created). Fields not in `profile` keep their value; an update that changes
    nothing writes nothing. Concurrent upserts of one external_id wait for each other on the
    member's row (or, for a new member, on the unique index) and both succeed.
    """
    unknown = set(profile) - MEMBER_PROFILE_FIELDS
    if unknown:
        raise ValueError(f"not profile fields: {sorted(unknown)}")
    external_id = (external_id or "").strip()
    if not external_id:
        raise ValidationError({"external_id": [_("A member number is required.")]})
    member = Member.objects.select_for_update().filter(external_id=external_id).first()
    if member is None:
        member = Member(external_id=external_id, **profile)
        _clean(member, exclude={"external_id"})
        try:
            with transaction.atomic():
                member.save(force_insert=True)
            return member, True
        except IntegrityError:
            # Another request created it (or took the phone) between our read and our insert.
            member = Member.objects.select_for_update().filter(external_id=external_id).first()
            if member is None:
                raise ValidationError({"phone": [_("This phone number belongs to another member.")]}) from None
    changed = [name for name, value in profile.items() if getattr(member, name) != value]
    if not changed:
        return member, False
    for name in changed:
        setattr(member, name, profile[name])
    _clean(member, exclude=MEMBER_PROFILE_FIELDS.difference(changed) | {"external_id"})
    member.updated_at = timezone.now()
    member.save(update_fields=[*changed, "updated_at"])
    return member, False


def _clean(member: Member, *, exclude: set[str]) -> None:
    try:
        member.full_clean(exclude=exclude)
    except ValidationError as error:
        # The model's wording names the model; partners want to know whose phone it is.
        errors = error.message_dict
        if "phone" in errors and Member.objects.filter(phone=member.phone).exclude(pk=member.pk).exists():
            errors["phone"] = [str(_("This phone number belongs to another member."))]
        raise ValidationError(errors) from None


# What staff edit on a member's admin page: the profile plus notes and, while unset, the number.
MEMBER_STAFF_FIELDS = MEMBER_PROFILE_FIELDS | {"notes", "external_id"}


@transaction.atomic
def member_save(*, member: Member, changed_fields: Iterable[str] = ()) -> Member:
    """Save a member edited by staff: insert a new one, or write only the fields that changed.

    Writing only the changed fields matters: a plain save() writes every column, rollups included,
    and would put back the orders and spend read when the page opened over what event ingest
    added meanwhile.
    """
    member.full_clean()
    if member.pk is None:
        member.save(force_insert=True)
        return member
    fields = sorted(MEMBER_STAFF_FIELDS.intersection(changed_fields))
    if fields:
        member.save(update_fields=[*fields, "updated_at"])
    return member
