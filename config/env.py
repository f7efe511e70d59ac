"""Strict parsing of settings from the environment.

Every setting Warden reads comes through these helpers. A value that does not parse stops
start-up with ``ImproperlyConfigured`` naming the variable and the rule, so a typo in a
deployment never turns into a silently different configuration. ``NAME_FILE`` may be given
instead of ``NAME`` for any value read with ``secret=True`` (Docker / Kubernetes secrets).
"""

from __future__ import annotations

import ipaddress
import os
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str, *, secret: bool = False) -> str | None:
    value = os.environ.get(name)
    file_name = os.environ.get(f"{name}_FILE") if secret else None
    if value is not None and file_name:
        raise ImproperlyConfigured(f"{name} and {name}_FILE are both set: set only one of them.")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {file_name!r}: {exc}") from exc
    return value


def string(name: str, default: str | None = None, *, secret: bool = False) -> str | None:
    value = _raw(name, secret=secret)
    return default if value is None or value == "" else value


def boolean(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None or value == "":
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}: expected true or false (1/0, yes/no, on/off), got {value!r}.")


def integer(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected a whole number, got {value!r}.") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {number}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}: must be at most {maximum}, got {number}.")
    return number


def choice(name: str, default: str, choices: list[str]) -> str:
    value = string(name, default)
    assert value is not None
    if value.upper() not in choices:
        raise ImproperlyConfigured(f"{name}: expected one of {', '.join(choices)}, got {value!r}.")
    return value.upper()


def csv(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def networks(name: str) -> list[str]:
    """A comma-separated list of IP networks (``10.0.0.0/8``, ``::1/128``; an address alone is a network of one)."""
    found = csv(name, [])
    for network in found:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {exc}") from None
    return found


def dates(name: str, default: list[str]) -> frozenset[date]:
    """Comma-separated ISO dates (``2026-12-25,2026-12-26``)."""
    out = set()
    for item in csv(name, default):
        try:
            out.add(date.fromisoformat(item))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not a date (YYYY-MM-DD)") from None
    return frozenset(out)


def mapping(name: str, default: dict[str, str]) -> dict[str, str]:
    """``key=value,key=value`` → a dict; an item without ``=`` or with an empty side is an error.
    Unset or empty (as docker-compose passes an unset variable) gives the default."""
    value = _raw(name)
    if value is None or not value.strip():
        return default
    out: dict[str, str] = {}
    for item in (part.strip() for part in value.split(",")):
        key, sep, val = item.partition("=")
        if not item:
            continue
        if not sep or not key.strip() or not val.strip():
            raise ImproperlyConfigured(f"{name}: {item!r} is not key=value (expected e.g. production=production)")
        out[key.strip()] = val.strip()
    return out


def timezone(name: str, default: str) -> str:
    value = string(name, default)
    assert value is not None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(f"{name}: {value!r} is not an IANA time zone name.") from None
    return value


def database(name: str, default: str) -> dict[str, Any]:
    """Parse ``postgres://user:password@host:port/name?option=value`` or ``sqlite:///path``."""
    url = string(name, default, secret=True)
    assert url is not None
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if not path or path == "/":
            raise ImproperlyConfigured(f"{name}: a sqlite URL needs a file path, e.g. sqlite:///data/warden.sqlite3.")
        path = path[1:]  # sqlite:///relative/path and sqlite:////absolute/path, as in SQLAlchemy
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            "OPTIONS": {
                # BEGIN IMMEDIATE takes the write lock up front: concurrent writers queue
                # instead of failing half-way with "database is locked".
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    if parts.scheme in {"postgres", "postgresql"}:
        db_name = unquote(parts.path.lstrip("/"))
        if not db_name:
            raise ImproperlyConfigured(f"{name}: the PostgreSQL URL names no database.")
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"{name}: the port is not a number.") from None
        return {
            "ENGINE": "common.postgresql",  # Django's, with a cheaper health check
            "NAME": db_name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(port or ""),
            "CONN_MAX_AGE": _whole_number(name, "conn_max_age", options.pop("conn_max_age", "60")),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(f"{name}: unsupported scheme {parts.scheme!r}; use postgres://… or sqlite:///…")


def _whole_number(name: str, option: str, value: str) -> int:
    if not value.isdigit():
        raise ImproperlyConfigured(f"{name}: {option} must be a whole number of seconds, got {value!r}.")
    return int(value)


def redis_url(name: str) -> str | None:
    url = string(name, None, secret=True)
    if url is not None and urlsplit(url).scheme not in {"redis", "rediss"}:
        raise ImproperlyConfigured(f"{name}: expected redis://host:port/db or rediss://…, got {url!r}.")
    return url
