import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest | None) -> str | None:
    """The client's address: the last hop of X-Forwarded-For when a trusted proxy sets it
    (AUDIT_TRUST_X_FORWARDED_FOR), otherwise the socket's peer. In its normal form (as the
    database stores and returns it, so the hashed text and the column agree), or None when it
    is not an address."""
    if request is None:
        return None
    address = request.META.get("REMOTE_ADDR") or ""
    if settings.AUDIT_TRUST_X_FORWARDED_FOR:
        address = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip() or address
    return normal_address(address)


def normal_address(address: str | None) -> str | None:
    """An IP address in its normal form (IPv6 compressed, lower case), as the database stores
    and returns it; None for anything that is not an address."""
    try:
        return ipaddress.ip_address(address or "").compressed
    except ValueError:
        return None
