"""Project-level views: readiness probe and JSON error pages."""

from __future__ import annotations

from django.db import DatabaseError, connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from pitchdesk.breakage import is_broken


@transaction.non_atomic_requests  # ATOMIC_REQUESTS would connect (and fail with 500) before the try
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """200 once the app can query its database; the harness polls this before running flows."""
    if is_broken("health"):
        return JsonResponse({"status": "error", "detail": "PITCHDESK_BREAK=health"}, status=503)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return JsonResponse({"status": "error", "detail": str(exc).strip()}, status=503)
    return JsonResponse({"status": "ok"})


def not_found(request: HttpRequest, exception: Exception) -> JsonResponse:
    """JSON 404 for paths outside the API router too (the app speaks JSON only)."""
    return JsonResponse({"detail": "Not found."}, status=404)
