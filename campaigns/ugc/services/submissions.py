"""Every write of member content: submitting, flagging and moderating.

Moderation is set-based: approving, rejecting or featuring N submissions is one locking SELECT,
one UPDATE, one INSERT of decisions and (for approval) one events_ingest call, whatever N is.
Approval pays points through the earn rules: it records one `ugc` event, sub-kind `approved`,
unique on (source "ugc-moderation", external_id "submission:<id>"), and loyalty's earning
pipeline pays for that event after commit. A submission approved twice, concurrently, or
rejected and approved again therefore earns once. Rejecting approved content takes it down but
does not take back points already paid.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Count, Max
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.ugc import images as image_rules
from campaigns.ugc.models import (
    ModerationAction,
    ModerationDecision,
    SensitiveWord,
    Submission,
    SubmissionImage,
    SubmissionKind,
    SubmissionStatus,
)
from campaigns.ugc.sensitive_words import Matcher, compile_matcher
from crm.core.exceptions import ApplicationError
from members.models import EventKind, Member
from members.services.events import EventInput, events_ingest

logger = logging.getLogger(__name__)

APPROVAL_EVENT_SOURCE = "ugc-moderation"
APPROVAL_EVENT_SUB_KIND = "approved"
MAX_REASON_LENGTH = 500


def approval_event_external_id(submission_id: int) -> str:
    return f"submission:{submission_id}"


# Sensitive words ------------------------------------------------------------------------------

_matcher_cache: dict = {"version": None, "matcher": compile_matcher([])}


def sensitive_word_matcher() -> Matcher:
    """The matcher of the active words, rebuilt in this process only when the list changed.

    One small aggregate query tells whether it did (count and latest edit of the active words),
    so a word staff add or deactivate applies to the next submission in every process.
    """
    version = SensitiveWord.objects.filter(is_active=True).aggregate(n=Count("id"), at=Max("updated_at"))
    version = (version["n"], version["at"])
    if _matcher_cache["version"] != version:
        words = SensitiveWord.objects.filter(is_active=True).values_list("word", flat=True)
        _matcher_cache["matcher"] = compile_matcher(words)
        _matcher_cache["version"] = version
    return _matcher_cache["matcher"]


def submissions_rescan(*, batch_size: int = 1_000) -> int:
    """Check the waiting submissions against the current list again (after staff added words);
    return how many are flagged now that were not. Works through the queue in id batches."""
    matcher = sensitive_word_matcher()
    newly_flagged = 0
    last_id = 0
    while True:
        batch = list(
            Submission.objects.filter(status=SubmissionStatus.PENDING, id__gt=last_id)
            .order_by("id")
            .values_list("id", "title", "text", "flagged")[:batch_size]
        )
        if not batch:
            return newly_flagged
        last_id = batch[-1][0]
        found = {pk: matcher.find(f"{title}\n{text}") for pk, title, text, _flagged in batch}
        changed = [
            Submission(pk=pk, flagged=bool(words), flagged_words=words)
            for pk, title, text, flagged in batch
            if (words := found[pk]) or flagged
        ]
        newly_flagged += sum(1 for pk, _t, _x, flagged in batch if found[pk] and not flagged)
        with transaction.atomic():
            # Only rows still waiting: one decided meanwhile keeps what the moderator saw.
            pending = set(
                Submission.objects.filter(pk__in=[row.pk for row in changed], status=SubmissionStatus.PENDING)
                .select_for_update()
                .values_list("pk", flat=True)
            )
            Submission.objects.bulk_update([row for row in changed if row.pk in pending], ["flagged", "flagged_words"])


# Submitting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInput:
    """A photo sent with a submission: an uploaded file, or the address where it is kept."""

    file: UploadedFile | None = None
    url: str = ""


def submission_create(
    *,
    member: Member,
    kind: str,
    source: str,
    title: str = "",
    text: str = "",
    rating: int | None = None,
    external_id: str = "",
    images: Sequence[ImageInput] = (),
) -> tuple[Submission, bool]:
    """Record a member's submission in the moderation queue; return it and whether it is new.

    With an `external_id`, a second submission with the same (source, external_id) returns the
    first one unchanged (a partner retrying). The sensitive-word list is checked here, so the
    submission reaches the queue already flagged.
    """
    title, text = (title or "").strip(), (text or "").strip()
    external_id = (external_id or "").strip()
    _check_submission(kind=kind, title=title, text=text, rating=rating, images=images)
    if external_id and (found := _existing(source, external_id)) is not None:
        return found, False
    words = sensitive_word_matcher().find(f"{title}\n{text}")
    submission = Submission(
        member=member,
        kind=kind,
        title=title,
        text=text,
        rating=rating,
        source=source,
        external_id=external_id,
        flagged=bool(words),
        flagged_words=words,
    )
    submission.full_clean(exclude=["member"], validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            submission.save()
            _save_images(submission, images)
    except IntegrityError:
        # The same (source, external_id) committed by a concurrent request: that one is it.
        if external_id and (found := _existing(source, external_id)) is not None:
            return found, False
        raise
    return submission, True


def _existing(source: str, external_id: str) -> Submission | None:
    return Submission.objects.filter(source=source, external_id=external_id).first()


def _check_submission(*, kind: str, title: str, text: str, rating: int | None, images: Sequence[ImageInput]) -> None:
    errors: dict[str, list[str]] = {}
    if kind not in SubmissionKind.values:
        errors["kind"] = [_("Choose text, image, review or proposal.")]
    if kind == SubmissionKind.REVIEW and rating is None:
        errors["rating"] = [_("A review needs a rating from 1 to 5.")]
    elif rating is not None and kind != SubmissionKind.REVIEW:
        errors["rating"] = [_("Only reviews have a rating.")]
    elif rating is not None and not 1 <= rating <= 5:
        errors["rating"] = [_("Give a rating from 1 to 5.")]
    if kind == SubmissionKind.IMAGE and not images:
        errors["images"] = [_("Send at least one photo.")]
    if kind in (SubmissionKind.TEXT, SubmissionKind.PROPOSAL, SubmissionKind.REVIEW) and not text:
        errors["text"] = [_("This field may not be blank.")]
    if len(images) > image_rules.MAX_IMAGES:
        errors["images"] = [_("Send at most %(max)d photos.") % {"max": image_rules.MAX_IMAGES}]
    for index, image in enumerate(images):
        if image.file is not None:
            problem = image_rules.image_file_problem(head=_head(image.file), size=image.file.size or 0)
        else:
            problem = image_rules.image_url_problem(image.url)
        if problem:
            errors[f"images.{index}"] = [problem]
    if errors:
        raise ValidationError(errors)


def _head(upload: UploadedFile) -> bytes:
    upload.seek(0)
    head = upload.read(16)
    upload.seek(0)
    return head


def _save_images(submission: Submission, images: Sequence[ImageInput]) -> None:
    for position, image in enumerate(images):
        row = SubmissionImage(submission=submission, position=position)
        if image.file is not None:
            row.content_type = image_rules.sniff_image_type(_head(image.file)) or ""
            row.size = image.file.size
            extension = row.content_type.rsplit("/", 1)[-1].replace("jpeg", "jpg")
            # Our own name: the client's file name is neither trusted nor kept (it may hold PII).
            row.file.save(f"{submission.pk}-{position}.{extension}", image.file, save=False)
        else:
            row.url = image.url
        row.save()


# Moderation ----------------------------------------------------------------------------------


def _lock(ids: Iterable[int], *, not_status: str | None = None, **filters) -> list[tuple[int, int, str]]:
    """Lock the submissions among `ids` that match `filters` (and are not in `not_status`), in id
    order; (id, member_id, kind) each.

    Rows matching when the lock is granted are the ones returned: on PostgreSQL a row another
    transaction just decided is re-checked against the filters after that transaction commits.
    """
    ids = sorted({int(pk) for pk in ids})
    if not ids:
        return []
    submissions = Submission.objects.filter(pk__in=ids, **filters)
    if not_status is not None:
        submissions = submissions.exclude(status=not_status)
    return list(submissions.order_by("pk").select_for_update().values_list("pk", "member_id", "kind"))


def _record(
    rows: list[tuple[int, int, str]], *, action: str, actor: AbstractBaseUser, now: datetime, reason: str = ""
) -> None:
    ModerationDecision.objects.bulk_create(
        ModerationDecision(submission_id=pk, action=action, actor=actor, at=now, reason=reason) for pk, _m, _k in rows
    )


def require_staff_actor(actor: AbstractBaseUser | None) -> None:
    if actor is None or not getattr(actor, "pk", None):
        raise ApplicationError(_("Moderation decisions need the staff member who made them."))


@transaction.atomic
def submissions_approve(*, submission_ids: Iterable[int], actor: AbstractBaseUser, now: datetime | None = None) -> int:
    """Approve these submissions (those not approved yet); return how many were.

    Each newly approved submission records its `ugc` approval event, which the earn rules pay
    for once it commits. Already approved ones are left alone and earn nothing again.
    """
    require_staff_actor(actor)
    now = now or timezone.now()
    rows = _lock(submission_ids, not_status=SubmissionStatus.APPROVED)
    if not rows:
        return 0
    Submission.objects.filter(pk__in=[pk for pk, _m, _k in rows]).update(
        status=SubmissionStatus.APPROVED, decided_at=now, decided_by=actor, reject_reason="", updated_at=now
    )
    _record(rows, action=ModerationAction.APPROVE, actor=actor, now=now)
    events_ingest(
        events=[
            EventInput(
                member_id=member_id,
                kind=EventKind.UGC,
                sub_kind=APPROVAL_EVENT_SUB_KIND,
                occurred_at=now,
                source=APPROVAL_EVENT_SOURCE,
                external_id=approval_event_external_id(pk),
                payload={"submission_id": pk, "submission_kind": kind},
            )
            for pk, member_id, kind in rows
        ]
    )
    return len(rows)


@transaction.atomic
def submissions_reject(
    *, submission_ids: Iterable[int], actor: AbstractBaseUser, reason: str, now: datetime | None = None
) -> int:
    """Reject these submissions with a reason (required); return how many changed.

    Approved content may be rejected later (taken down): it stops being featured, and the points
    it earned stay with the member. Approving it again never pays twice.
    """
    require_staff_actor(actor)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": [_("Give the reason for the rejection.")]})
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationError(
            {"reason": [_("The reason may be at most %(max)d characters.") % {"max": MAX_REASON_LENGTH}]}
        )
    now = now or timezone.now()
    rows = _lock(submission_ids, not_status=SubmissionStatus.REJECTED)
    if not rows:
        return 0
    Submission.objects.filter(pk__in=[pk for pk, _m, _k in rows]).update(
        status=SubmissionStatus.REJECTED,
        decided_at=now,
        decided_by=actor,
        reject_reason=reason,
        featured=False,
        featured_at=None,
        updated_at=now,
    )
    _record(rows, action=ModerationAction.REJECT, actor=actor, now=now, reason=reason)
    return len(rows)


@transaction.atomic
def submissions_feature(
    *, submission_ids: Iterable[int], actor: AbstractBaseUser, featured: bool = True, now: datetime | None = None
) -> int:
    """Feature (or stop featuring) approved submissions; return how many changed.

    Only approved content can be featured; others among the ids are left alone.
    """
    require_staff_actor(actor)
    now = now or timezone.now()
    filters = {"status": SubmissionStatus.APPROVED, "featured": not featured}
    rows = _lock(submission_ids, **filters)
    if not rows:
        return 0
    Submission.objects.filter(pk__in=[pk for pk, _m, _k in rows]).update(
        featured=featured, featured_at=now if featured else None, updated_at=now
    )
    _record(rows, action=ModerationAction.FEATURE if featured else ModerationAction.UNFEATURE, actor=actor, now=now)
    return len(rows)
