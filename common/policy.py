from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.errors import PermissionDenied


@dataclass(frozen=True)
class Decision:
    """The answer to "may this user do this?", with the reason when the answer is no.

    The same reason text reaches the API (403 body) and the admin, so a refusal always says why.
    """

    allowed: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed

    def ensure(self) -> None:
        if not self.allowed:
            raise PermissionDenied(self.reason)


ALLOW = Decision(True)


def deny(reason: str) -> Decision:
    return Decision(False, reason)


def can_use_admin(user: Any) -> Decision:
    if getattr(user, "is_active", False) and getattr(user, "is_staff", False):
        return ALLOW
    return deny("The admin is for staff accounts.")
