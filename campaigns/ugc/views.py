"""Staff page of member content: the featured submissions and the poll results (with a chart)."""

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from campaigns.ugc.selectors import featured_submissions, polls_for_results_page
from loyalty.selectors import masked_name


@require_GET
@staff_member_required
def featured_view(request):
    if not request.user.has_perm("ugc.view_submission"):
        raise PermissionDenied
    submissions = featured_submissions()
    polls = polls_for_results_page()
    chart_data = [
        {
            "id": results.poll.pk,
            "labels": [row.label for row in results.options],
            "votes": [row.votes for row in results.options],
            "winner": next(
                (index for index, row in enumerate(results.options) if row.option_id == results.winner_id), None
            ),
        }
        for results in polls
    ]
    context = {
        **admin.site.each_context(request),
        "title": _("Featured member content"),
        # Masked as on the honor roll: the page is made to be shown around (screens, reports).
        "submissions": [(submission, masked_name(submission.member.name)) for submission in submissions],
        "polls": polls,
        "chart_data": chart_data,
        "votes_label": _("votes"),
    }
    return TemplateResponse(request, "ugc/featured.html", context)
