from django.http import JsonResponse
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.core.api import request_has_scope
from crm.models import Scope

_PING = {"status": "ok"}


def bench_ping(request):
    """The baseline of bench/bench_api.py: constant JSON, no database, no DRF. Mounted only with
    CRM_API_BENCH_VIEWS=true, never in a deployment."""
    return JsonResponse(_PING)


class BenchMemberDrfApi(APIView):
    """The second baseline of bench/bench_api.py: the member read done the conventional DRF way
    (ORM with select_related, the badges in a second query, MemberDetailApi's OutputSerializer),
    with the same key check, scope and throttle. Mounted only with CRM_API_BENCH_VIEWS=true."""

    required_scope = Scope.MEMBERS_READ

    def get(self, request, external_id: str):
        from loyalty.selectors import member_badges_current
        from members.api.views import MemberDetailApi
        from members.models import Member

        member = (
            Member.objects.select_related("points_account", "score", "tier_status__tier")
            .filter(external_id=external_id)
            .first()
        )
        if member is None:
            raise NotFound()
        badges = member_badges_current().filter(member=member).select_related("badge").order_by("awarded_at", "id")
        context = {"show_points": request_has_scope(request, Scope.POINTS_READ), "badges": list(badges)}
        return Response(MemberDetailApi.OutputSerializer(member, context=context).data)
