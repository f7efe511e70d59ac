from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest | None) -> str | None:
    """The client's address: the last hop of X-Forwarded-For when a trusted proxy sets it
    (AUDIT_TRUST_X_FORWARDED_FOR), otherwise the socket's peer."""
    if request is None:
        return None
    if settings.AUDIT_TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[-1].strip() or None
    return request.META.get("REMOTE_ADDR") or None
