"""Where a change came from (request id, source address), carried to ``audit_record``
without every service having to pass it along."""

from __future__ import annotations

import getpass
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse

from common.http import client_address, normal_address

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")


@dataclass(frozen=True)
class Origin:
    request_id: str = ""
    source_ip: str | None = None
    request: HttpRequest | None = None  # the request being answered, for ``actor``
    reason: str = ""  # why, for the changes recorded without a service to give one (``audit.accounts``)


def actor() -> Any:
    """Who is signed in to the request being answered (its user once the API or the admin has
    authenticated them), or None outside a request or before sign-in: for the changes that
    reach the trail without a service to name their actor (``audit.accounts``)."""
    user = getattr(current().request, "user", None)
    return user if getattr(user, "is_authenticated", False) else None


def where_run(command: str) -> str:
    """For a change made by a management command, whose trail names no signed-in user: who ran
    it, and where, as the event's reason."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # a uid without a name, as in some containers
        who = f"uid {os.getuid()}"
    return f"manage.py {command}, run by {who} on {socket.gethostname()}"


_origin: ContextVar[Origin] = ContextVar("audit_origin", default=Origin())  # noqa: B039 - frozen dataclass


def current() -> Origin:
    return _origin.get()


@contextmanager
def origin(
    request_id: str = "", source_ip: str | None = None, request: HttpRequest | None = None, reason: str = ""
) -> Iterator[Origin]:
    """Set the origin for code outside a request (commands, tasks). The address is kept in its
    normal form, so the hashed text and the stored column say the same."""
    value = Origin(request_id or uuid.uuid4().hex, normal_address(source_ip), request, reason)
    token = _origin.set(value)
    try:
        yield value
    finally:
        _origin.reset(token)


class RequestContextMiddleware:
    """Give every request an id (the caller's X-Request-ID if well-formed) and echo it back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # From the environ itself: ``request.headers`` would first make a map of every header.
        given = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = given if _REQUEST_ID_RE.match(given) else os.urandom(16).hex()
        token = _origin.set(Origin(request_id, client_address(request), request))
        try:
            response = self.get_response(request)
        finally:
            _origin.reset(token)
        response["X-Request-ID"] = request_id
        return response
