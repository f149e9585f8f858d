"""Public pages of the loyalty app (no login): the honor roll."""

from django.shortcuts import render
from django.views.decorators.http import require_GET

from loyalty.selectors import honor_roll


@require_GET
def honor_roll_view(request):
    """Current holders of the public badges and titles; names are masked (张**), no phones."""
    return render(request, "loyalty/honor_roll.html", {"entries": honor_roll()})
