"""Sign-in with a throttle on failures, for the admin, the browsable API and basic auth."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from common.http import client_address


def _key(username: str, source: str = "*") -> str:
    digest = hashlib.sha256(f"{username.lower()}\x00{source}".encode()).hexdigest()
    return f"login-failures:{digest}"


def _source(address: str | None) -> str:
    """Where attempts come from, as counted: an IPv4 address, or an IPv6 address's /64 (one
    subscriber's usual share: counting each of its addresses apart would count nothing)."""
    if not address:
        return ""
    ip = ipaddress.ip_address(address)  # normal already: an IPv4 client of a dual-stack listener is IPv4
    return address if ip.version == 4 else str(ipaddress.ip_network(f"{ip}/64", strict=False))


def _counted(key: str) -> int:
    """Count one attempt atomically, before the password is checked, so that parallel attempts
    cannot all slip under the limit."""
    cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW)
    try:
        count = cache.incr(key)
    except ValueError:  # the window closed between add and incr
        count = 1
        cache.set(key, count, timeout=settings.LOGIN_FAILURE_WINDOW)
    if count == 1:
        # The window opens with the first attempt. (Redis's incr checks that the key exists and
        # then adds, in two steps: a key that expired between them comes back with no expiry.)
        cache.touch(key, settings.LOGIN_FAILURE_WINDOW)
    return count


class ThrottledModelBackend(ModelBackend):
    """Within LOGIN_FAILURE_WINDOW seconds, refuse further attempts (even with the right
    password) after LOGIN_FAILURE_LIMIT failures for one username from one source (``_source``),
    or LOGIN_FAILURE_ACCOUNT_LIMIT for it from everywhere together (a guesser with many addresses),
    until the window has passed. Raising PermissionDenied stops Django trying other backends."""

    def authenticate(  # type: ignore[override]
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if username is None:
            username = kwargs.get(self._username_field(), "")
        if "\x00" in (username or ""):  # no one's name, and PostgreSQL takes no NUL in text
            return None
        here, everywhere = _key(username or "", _source(client_address(request))), _key(username or "")
        if _counted(here) > settings.LOGIN_FAILURE_LIMIT or _counted(everywhere) > settings.LOGIN_FAILURE_ACCOUNT_LIMIT:
            raise PermissionDenied("Too many failed sign-in attempts; try again later.")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:  # this attempt was no failure
            cache.delete(here)
            with contextlib.suppress(ValueError):  # the window closed meanwhile
                if cache.decr(everywhere) <= 0:  # nothing left to count (nor a key without expiry)
                    cache.delete(everywhere)
        return user

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD
