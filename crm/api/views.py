from django.http import JsonResponse

_PING = {"status": "ok"}


def bench_ping(request):
    """The baseline of bench/bench_api.py: constant JSON, no database, no DRF. Mounted only with
    CRM_API_BENCH_VIEWS=true, never in a deployment."""
    return JsonResponse(_PING)
