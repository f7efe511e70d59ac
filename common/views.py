from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from config.celery import app as celery_app


def health(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers (the path MLflow's server uses). Touches nothing else, so a
    load balancer can poll it often; ``/healthz`` is the readiness check."""
    return HttpResponse("OK", content_type="text/plain")


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: the database answers, and the broker if one is configured."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {exc.__class__.__name__}"
    if celery_app.conf.task_always_eager:
        checks["broker"] = "not configured: background work runs in-process"
    else:
        try:
            with celery_app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"down: {exc.__class__.__name__}"
    healthy = all(v == "ok" or v.startswith("not configured") for v in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)
