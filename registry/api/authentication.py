from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from common import roles
from common.rows import JoinedRow
from registry.models import ApiToken
from registry.services import TOKEN_PREFIX, hash_token

LAST_USED_RESOLUTION = timedelta(minutes=1)
# Read on every request (see common.rows), with the user's groups, which every write asks for.
_TOKENS = JoinedRow(ApiToken, ("user",), ("key_hash",), extra={"groups": lambda c: roles.groups_column(c, "t1.id")})


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <token>`` (``Token <token>`` also accepted)."""

    keywords = ("bearer", "token")

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: expected 'Bearer <token>'.")
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        return token_user(secret)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="warden"'


def token_user(secret: str) -> tuple[Any, ApiToken]:
    """The user a token secret stands for, or AuthenticationFailed saying why not."""
    token = _TOKENS.get(hash_token(secret))
    now = timezone.now()
    if token is None or token.revoked_at is not None:
        raise exceptions.AuthenticationFailed("Invalid or revoked token.")
    if token.expires_at is not None and token.expires_at <= now:
        raise exceptions.AuthenticationFailed("This token has expired.")
    if not token.user.is_active:
        raise exceptions.AuthenticationFailed("This token's user is inactive.")
    roles.remember_groups(token.user, token.groups)  # type: ignore[attr-defined]
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        # Telemetry, not a governed change: one cheap UPDATE at most once a minute.
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user, token


class BasicTokenAuthentication(authentication.BasicAuthentication):
    """HTTP basic auth, as MLflow's client sends it (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``).
    The password may be one of the user's API tokens, checked by its hash; a real password goes
    through Django's throttled sign-in, which is deliberately slow (a password hash per request),
    so clients that call often should use a token."""

    def authenticate_credentials(self, userid: str, password: str, request: Any = None) -> tuple[Any, Any]:
        if password.startswith(TOKEN_PREFIX):
            user, token = token_user(password)
            if user.get_username() != userid:
                raise exceptions.AuthenticationFailed("This token belongs to another user.")
            return user, token
        return super().authenticate_credentials(userid, password, request)


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}
