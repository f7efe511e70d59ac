"""Sign-in with a throttle on failures, for the admin, the browsable API and basic auth."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from common.http import client_address


def _key(username: str, address: str) -> str:
    digest = hashlib.sha256(f"{username.lower()}\x00{address}".encode()).hexdigest()
    return f"login-failures:{digest}"


class ThrottledModelBackend(ModelBackend):
    """After LOGIN_FAILURE_LIMIT failures for one username from one address within
    LOGIN_FAILURE_WINDOW seconds, refuse further attempts (even with the right password)
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
        key = _key(username or "", client_address(request) or "")
        # Count the attempt before checking the password, atomically, so that parallel
        # attempts cannot all slip under the limit.
        cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW)
        try:
            attempts = cache.incr(key)
        except ValueError:  # the window closed between add and incr
            cache.set(key, attempts := 1, timeout=settings.LOGIN_FAILURE_WINDOW)
        if attempts > settings.LOGIN_FAILURE_LIMIT:
            raise PermissionDenied("Too many failed sign-in attempts; try again later.")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            cache.delete(key)
        return user

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD
