"""Member content and co-creation polls over the partner API (docs/API.md, "Member content").

Submissions arrive as JSON (photos given by their https addresses) or as multipart/form-data
(photos uploaded as files, at most 9 of 5 MB each, JPEG/PNG/GIF/WebP recognised by their bytes).
Every write goes through campaigns.ugc.services; these views only shape input and output.
"""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns.ugc import images as image_rules
from campaigns.ugc.models import Poll, PollStatus, SubmissionKind, SubmissionStatus
from campaigns.ugc.selectors import poll_results, polls_list, submissions_of_member
from campaigns.ugc.services import ImageInput, poll_vote, submission_create
from crm.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from crm.core.api import PartnerKey, ReadSerializer, StrictJSONParser, cursor_pagination, error_responses
from crm.models import Scope
from members.models import Member

TAGS = ["member content"]
MAX_ID = 2**63 - 1
# Mini-program pages showing live results are refreshed by many members at once; counting a
# million votes takes about half a second, so partners share one count for this long.
RESULTS_MAX_AGE_SECONDS = 5
POLL_ID_PARAMETER = OpenApiParameter(
    "poll_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The poll's id (from the poll list)."
)


def _source(request) -> str:
    """Whose ids `external_id` values are: the partner's, or the staff member's."""
    if isinstance(request.auth, PartnerKey):
        return request.auth.owner
    return f"u:{request.user.pk}"


def _member(external_id: str) -> Member:
    member = Member.objects.only("id", "external_id").filter(external_id=external_id).first()
    if member is None:
        raise NotFound(_("No member has this number."))
    return member


def _visible_poll(poll_id: str) -> Poll:
    """The poll (open or closed; drafts are not shown) of a path's id, or a 404 (also for ids that
    are not numbers or out of range: the route takes any text, so every miss is the API's 404)."""
    number = int(poll_id) if poll_id.isascii() and poll_id.isdigit() and len(poll_id) <= 19 else 0
    poll = Poll.objects.exclude(status=PollStatus.DRAFT).filter(pk=number).first() if 0 < number <= MAX_ID else None
    if poll is None:
        raise NotFound(_("No such poll."))
    return poll


# Submissions ---------------------------------------------------------------------------------


class ImageOutputSerializer(ReadSerializer):
    url = serializers.SerializerMethodField(help_text="Where the photo is: the address sent, or our copy.")
    content_type = serializers.CharField(help_text="For uploaded photos; empty for addresses.")
    size = serializers.IntegerField(allow_null=True, help_text="Bytes, for uploaded photos.")

    def get_url(self, image) -> str:
        if image.url:
            return image.url
        request = self.context.get("request")
        return request.build_absolute_uri(image.file.url) if request is not None else image.file.url


class SubmissionOutputSerializer(ReadSerializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField(help_text="Your id of it; empty when none was sent.")
    kind = serializers.CharField(help_text="text, image, review or proposal.")
    title = serializers.CharField()
    text = serializers.CharField()
    rating = serializers.IntegerField(allow_null=True)
    images = serializers.SerializerMethodField()
    status = serializers.CharField(help_text="pending, approved or rejected.")
    reject_reason = serializers.CharField(help_text="Why it was rejected; empty otherwise.")
    featured = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_field(ImageOutputSerializer(many=True))
    def get_images(self, submission) -> list[dict]:
        return ImageOutputSerializer(submission.images.all(), many=True, context=self.context).data


class SubmissionCreateApi(APIView):
    """Submit a member's content for moderation. 201 when recorded, 200 when this `external_id`
    was already submitted by you (the first submission is returned, unchanged).

    Send JSON with photo addresses in `image_urls`, or multipart/form-data with the photos as
    `images` files. Approved content earns the member points by the earn rules.
    """

    required_scope = Scope.UGC_WRITE
    parser_classes = [StrictJSONParser, MultiPartParser]

    class InputSerializer(serializers.Serializer):
        member_external_id = serializers.CharField(max_length=64)
        kind = serializers.ChoiceField(choices=SubmissionKind.choices)
        title = serializers.CharField(max_length=200, required=False, allow_blank=True)
        text = serializers.CharField(max_length=5000, required=False, allow_blank=True)
        rating = serializers.IntegerField(
            min_value=1,
            max_value=5,
            required=False,
            allow_null=True,
            help_text="Reviews only (required for them): 1 to 5.",
        )
        external_id = serializers.CharField(
            max_length=64,
            required=False,
            allow_blank=True,
            help_text="Your id of this submission; sending it again returns the first one.",
        )
        image_urls = serializers.ListField(
            child=serializers.CharField(max_length=image_rules.MAX_URL_LENGTH),
            required=False,
            max_length=image_rules.MAX_IMAGES,
            help_text="https:// addresses of the photos (stored, not fetched).",
        )

    class UploadInputSerializer(InputSerializer):
        images = serializers.ListField(
            child=serializers.FileField(max_length=200, allow_empty_file=False),
            required=False,
            max_length=image_rules.MAX_IMAGES,
            help_text="Photo files: JPEG, PNG, GIF or WebP, at most 5 MB each.",
        )

    class OutputSerializer(SubmissionOutputSerializer):
        pass

    @extend_schema(
        operation_id="ugc_submissions_submit",
        tags=TAGS,
        parameters=[IDEMPOTENCY_PARAMETER],
        request={"application/json": InputSerializer, "multipart/form-data": UploadInputSerializer},
        responses={200: OutputSerializer, 201: OutputSerializer, **error_responses(not_found=True, write=True)},
    )
    @idempotent
    def post(self, request):
        serializer = self.UploadInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        images = [ImageInput(url=url) for url in data.get("image_urls", [])]
        images += [ImageInput(file=upload) for upload in data.get("images", [])]
        submission, created = submission_create(
            member=_member(data["member_external_id"]),
            kind=data["kind"],
            source=_source(request),
            title=data.get("title", ""),
            text=data.get("text", ""),
            rating=data.get("rating"),
            external_id=data.get("external_id", ""),
            images=images,
        )
        output = self.OutputSerializer(submission, context={"request": request}).data
        return Response(output, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class SubmissionListApi(APIView):
    """A member's submissions, newest first, with their moderation status; cursor-paginated."""

    required_scope = Scope.UGC_READ
    pagination_class = cursor_pagination(ordering="-id", page_size=50)

    class FilterSerializer(serializers.Serializer):
        member_external_id = serializers.CharField(max_length=64)
        status = serializers.ChoiceField(choices=SubmissionStatus.choices, required=False)

    class OutputSerializer(SubmissionOutputSerializer):
        pass

    @extend_schema(
        operation_id="ugc_submissions_list",
        tags=TAGS,
        parameters=[FilterSerializer],
        responses={200: OutputSerializer(many=True), **error_responses(not_found=True)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        member = _member(filters.validated_data["member_external_id"])
        queryset = submissions_of_member(member_id=member.pk)
        if filters.validated_data.get("status"):
            queryset = queryset.filter(status=filters.validated_data["status"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, request, view=self)
        data = self.OutputSerializer(page, many=True, context={"request": request}).data
        return paginator.get_paginated_response(data)


# Polls -------------------------------------------------------------------------------------------


class PollOptionOutputSerializer(ReadSerializer):
    id = serializers.IntegerField()
    label = serializers.CharField()
    description = serializers.CharField()
    proposed_by_member = serializers.SerializerMethodField(help_text="True when a member proposed it.")

    def get_proposed_by_member(self, option) -> bool:
        return option.proposer_id is not None


class PollListApi(APIView):
    """Co-creation polls members can see (open and closed), newest first, with their options."""

    required_scope = Scope.UGC_READ
    pagination_class = cursor_pagination(ordering="-id", page_size=50)

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=[PollStatus.OPEN, PollStatus.CLOSED], required=False)

    class OutputSerializer(ReadSerializer):
        id = serializers.IntegerField()
        title = serializers.CharField()
        description = serializers.CharField()
        status = serializers.CharField(help_text="open or closed.")
        closes_at = serializers.DateTimeField(allow_null=True)
        winner_option_id = serializers.IntegerField(source="winner_id", allow_null=True)
        options = serializers.SerializerMethodField()

        @extend_schema_field(PollOptionOutputSerializer(many=True))
        def get_options(self, poll) -> list[dict]:
            return PollOptionOutputSerializer(poll.options.all(), many=True).data

    @extend_schema(
        operation_id="ugc_polls_list",
        tags=TAGS,
        parameters=[FilterSerializer],
        responses={200: OutputSerializer(many=True), **error_responses(not_found=True)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(polls_list(status=filters.validated_data.get("status")), request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)


class PollVoteApi(APIView):
    """A member's vote. One per member and poll: 201 when recorded, 200 when the member already
    voted for this option; 422 when they voted for another one, or the poll is closed."""

    required_scope = Scope.UGC_WRITE

    class InputSerializer(serializers.Serializer):
        member_external_id = serializers.CharField(max_length=64)
        option_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)

    class OutputSerializer(ReadSerializer):
        poll_id = serializers.IntegerField()
        option_id = serializers.IntegerField()
        voted_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="ugc_polls_vote",
        tags=TAGS,
        parameters=[POLL_ID_PARAMETER, IDEMPOTENCY_PARAMETER],
        request=InputSerializer,
        responses={200: OutputSerializer, 201: OutputSerializer, **error_responses(not_found=True, write=True)},
    )
    @idempotent
    def post(self, request, poll_id: str):
        poll = _visible_poll(poll_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        vote, created = poll_vote(
            poll_id=poll.pk,
            option_id=data["option_id"],
            member=_member(data["member_external_id"]),
            source=_source(request),
        )
        return Response(
            self.OutputSerializer(vote).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class _OptionResultSerializer(ReadSerializer):
    option_id = serializers.IntegerField()
    label = serializers.CharField()
    votes = serializers.IntegerField()


class PollResultsApi(APIView):
    """Votes per option (live while the poll is open: at most 5 seconds old), and the winner once
    it is closed."""

    required_scope = Scope.UGC_READ

    class OutputSerializer(ReadSerializer):
        poll_id = serializers.IntegerField(source="poll.pk")
        status = serializers.CharField(source="poll.status", help_text="open or closed.")
        total = serializers.IntegerField()
        winner_option_id = serializers.IntegerField(source="winner_id", allow_null=True)
        options = serializers.SerializerMethodField()

        @extend_schema_field(_OptionResultSerializer(many=True))
        def get_options(self, results) -> list[dict]:
            return _OptionResultSerializer(results.options, many=True).data

    @extend_schema(
        operation_id="ugc_polls_results",
        tags=TAGS,
        parameters=[POLL_ID_PARAMETER],
        responses={200: OutputSerializer, **error_responses(not_found=True)},
    )
    def get(self, request, poll_id: str):
        poll = _visible_poll(poll_id)
        return Response(self.OutputSerializer(poll_results(poll=poll, max_age=RESULTS_MAX_AGE_SECONDS)).data)
