"""The dashboard page. It is a shell: its data comes live from /admin/events and the admin API."""

from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from inference import conf


@csrf_exempt  # it changes nothing; a POST should hear 405, not a CSRF refusal
@require_GET
def dashboard(request):
    return render(
        request,
        "monitoring/dashboard.html",
        {
            "heartbeat_s": conf.get("LMX_EVENTS_HEARTBEAT_S"),
            "throughput_s": conf.get("LMX_EVENTS_THROUGHPUT_S"),
            "token_required": bool(conf.get("LMX_ADMIN_TOKEN")),
        },
    )
