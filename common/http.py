import ipaddress
from functools import lru_cache

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


@lru_cache(maxsize=4096)  # asked on every request, mostly for the same few clients or proxies
def normal_address(address: str | None) -> str | None:
    """An IP address in its normal form, as both databases store and return it: IPv6 compressed
    and in lower case; an IPv4 client of a dual-stack listener (``::ffff:a.b.c.d``), or an IPv6
    address holding IPv4 the old compatible way (``::a.b.c.d``), as that IPv4 address, which
    PostgreSQL and Django would each print their own way. None for anything not an address."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(int(ip))  # without a zone (fe80::1%eth0), which inet does not take
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if 2**16 <= int(ip) < 2**32:  # the range PostgreSQL prints as ::a.b.c.d
            return str(ipaddress.IPv4Address(int(ip)))
    return ip.compressed
