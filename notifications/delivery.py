"""Sending what the outbox holds. A delivery is first claimed: one conditional UPDATE moves a
pending, due delivery's ``next_attempt_at`` past the time a try can take, and only the caller
whose UPDATE changed the row sends it. That is atomic on PostgreSQL and on SQLite alike, so the
task kicked after the commit and the periodic sweep never send one delivery twice, and no row
lock is held while a webhook answers. Every try is logged as an ``Attempt``; a failed one is
tried again after a doubling backoff, up to ``NOTIFY_MAX_ATTEMPTS``. A worker that dies
mid-try leaves the claim to lapse, and the sweep tries again; so does a receiver slower than
the claim, whose try, answered at last, is logged and, unless it succeeded, leaves the delivery
to its new claimant.

Webhooks are signed: ``X-Warden-Signature: sha256=<hex>`` is HMAC-SHA256 with the webhook's
secret over ``<delivery id>.<timestamp>.<body>``, with the id and timestamp in
``X-Warden-Delivery`` and ``X-Warden-Timestamp``; ``docs/notifications.md`` shows a receiver.
A redirect is a failure (a POST must not turn into a GET that drops the body). A webhook has
``NOTIFY_WEBHOOK_TIMEOUT``, counted from the start of connecting, to answer with its status and
headers in all, however slowly the answer trickles in.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from notifications import policies
from notifications.models import Attempt, Channel, Delivery, DeliveryState

USER_AGENT = "Warden-Webhook/1"
MAX_BACKOFF_SECONDS = 24 * 3600  # the doubling stops at a day between tries


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def deliver(delivery_id: Any) -> str | None:
    """Try one delivery if it is pending and due; returns its state afterwards, or None when
    it is not due or another worker has claimed it."""
    now = timezone.now()
    claim = now + timedelta(seconds=settings.NOTIFY_WEBHOOK_TIMEOUT + settings.EMAIL_TIMEOUT + 60)
    due = Delivery.objects.filter(pk=delivery_id, state=DeliveryState.PENDING, next_attempt_at__lte=now)
    if not due.update(next_attempt_at=claim):
        return None
    delivery = Delivery.objects.select_related("message", "webhook").get(pk=delivery_id)
    started = time.monotonic()
    # A webhook deactivated since (its receiver moved, or was compromised), or one that no longer
    # takes the message's model (restricted since), is sent nothing more.
    refusal = ""
    if delivery.webhook is not None and not delivery.webhook.active:
        refusal = "the webhook is inactive"
    elif delivery.webhook is not None and not policies.may_resend(delivery.webhook, delivery.message):
        refusal = "the webhook no longer takes events about this model (restricted)"
    stopped = bool(refusal)
    ok, status, error = (False, None, refusal) if stopped else _send(delivery)
    now = timezone.now()
    with transaction.atomic():
        current = Delivery.objects.select_for_update().get(pk=delivery_id)
        # A receiver slower than the claim lets it lapse, and the sweep may have claimed the
        # delivery since: the try is logged all the same, and the state is left to that worker.
        ours = (current.state, current.next_attempt_at) == (DeliveryState.PENDING, claim)
        logged = Attempt.objects.filter(delivery=current).aggregate(last=Max("number"))["last"] or 0
        number = max(current.attempts, logged) + 1
        Attempt.objects.create(
            delivery=current,
            number=number,
            at=now,
            ok=ok,
            status_code=status,
            error=error[:2000],
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        if not ours and not (ok and current.state == DeliveryState.PENDING):
            return current.state
        # Ours to record, or a success, which ends the delivery whoever holds the claim now.
        current.attempts = number
        if ok:
            current.state, current.delivered_at = DeliveryState.DELIVERED, now
        elif stopped or number >= settings.NOTIFY_MAX_ATTEMPTS:
            current.state = DeliveryState.FAILED
        else:
            backoff = settings.NOTIFY_BACKOFF_SECONDS * 2 ** min(number - 1, 30)
            current.next_attempt_at = now + timedelta(seconds=min(backoff, MAX_BACKOFF_SECONDS))
        current.save(update_fields=["state", "attempts", "delivered_at", "next_attempt_at"])
    return current.state


def deliver_due(limit: int = 500, budget_seconds: float = 60) -> int:
    """Deliver up to ``limit`` pending deliveries that are due, oldest first, for at most about
    ``budget_seconds`` (slow receivers must not hold up the rest of the periodic work); returns
    how many were delivered. What is left waits for the next sweep."""
    due = Delivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=timezone.now())
    ids = list(due.order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    deadline = time.monotonic() + budget_seconds
    delivered = 0
    for pk in ids:
        if time.monotonic() > deadline:
            break
        delivered += deliver(pk) == DeliveryState.DELIVERED
    return delivered


def _send(delivery: Delivery) -> tuple[bool, int | None, str]:
    try:
        if delivery.channel == Channel.EMAIL:
            message = delivery.message
            send_mail(message.subject, message.body, None, [delivery.address])
            return True, None, ""
        return _post(delivery)
    except Exception as error:  # any failure is logged on the attempt and retried
        return False, None, f"{type(error).__name__}: {error}"


def _post(delivery: Delivery) -> tuple[bool, int | None, str]:
    webhook = delivery.webhook
    assert webhook is not None
    body = json.dumps(
        {
            "delivery": str(delivery.pk),
            "replay_of": str(delivery.replay_of_id or "") or None,
            **delivery.message.payload,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        webhook.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Warden-Event": delivery.message.event,
            "X-Warden-Delivery": str(delivery.pk),
            "X-Warden-Timestamp": timestamp,
            "X-Warden-Signature": sign(webhook.secret, str(delivery.pk), timestamp, body),
        },
    )
    try:
        with _OPENER.open(request, timeout=settings.NOTIFY_WEBHOOK_TIMEOUT) as response:
            return 200 <= response.status < 300, response.status, ""
    except urllib.error.HTTPError as error:
        return False, error.code, f"HTTP {error.code}: {error.reason}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx is raised as an HTTPError: a failed try


class _Deadline:
    """A connected socket whose reads end by ``started + seconds``. A socket's own timeout bounds
    each read, so a receiver sending its answer a byte at a time would otherwise hold the worker
    for as long as it likes."""

    def __init__(self, sock: socket.socket, started: float, seconds: float) -> None:
        self._sock, self._seconds, self._deadline = sock, seconds, started + seconds

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        left = self._deadline - time.monotonic()
        if left > 0:
            self._sock.settimeout(left)
            try:
                return self._sock.recv_into(buffer, nbytes, flags)
            except TimeoutError:
                pass
        raise TimeoutError(f"no full answer within {self._seconds:g} s")

    def makefile(self, mode: str = "rb", *args: Any) -> io.BufferedReader:
        """What ``socket.makefile`` gives, reading through ``recv_into``: the socket counts the
        reader, so that closing it (as urllib does once the headers are read) waits for the
        reader to be closed too."""
        reader = socket.SocketIO(self, "rb")  # type: ignore[arg-type]  # reads come through recv_into
        self._sock._io_refs += 1  # type: ignore[attr-defined]
        return io.BufferedReader(reader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _within_timeout(connect: Any) -> Any:
    """``connect`` of an HTTP(S) connection, whose answer must then arrive within ``timeout`` of
    the start of connecting."""

    def connect_within_timeout(connection: http.client.HTTPConnection) -> None:
        started = time.monotonic()
        connect(connection)
        connection.sock = _Deadline(connection.sock, started, connection.timeout)  # type: ignore[arg-type]  # always given

    return connect_within_timeout


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


def reachable(address: str) -> bool:
    """Whether a webhook may be sent to ``address`` (an IP): a public one, or one of the networks
    ``NOTIFY_WEBHOOK_ALLOWED_NETWORKS`` names. Otherwise a webhook's URL could have Warden post
    to the database, a cloud's metadata service or an internal admin page, and its attempt log
    would map them. An IPv6 address that carries an IPv4 one (mapped, 6to4, Teredo, NAT64) is
    judged by the IPv4 address; any other IPv6 address must be global unicast (``2000::/3``)."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        teredo = ip.teredo
        carried = ip.ipv4_mapped or ip.sixtofour or (teredo[1] if teredo else None)
        if carried is None and ip in _NAT64:
            carried = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        ip = carried or ip
    public = ip.is_global and not ip.is_multicast and (ip.version == 4 or ip in _GLOBAL_UNICAST_V6)
    return public or any(
        ip in ipaddress.ip_network(net, strict=False) for net in settings.NOTIFY_WEBHOOK_ALLOWED_NETWORKS
    )


def _reachable_connection(
    address: tuple[str, int], timeout: Any = None, source_address: Any = None, **_: Any
) -> socket.socket:
    """``socket.create_connection``, to the first of the host's addresses that is ``reachable``:
    the address is checked as resolved for this connection, so a name that resolves to a public
    address when the webhook is saved and to an internal one later is still refused."""
    host, port = address
    error: OSError = OSError(f"{host} resolves to no address a webhook may reach (NOTIFY_WEBHOOK_ALLOWED_NETWORKS)")
    for family, kind, proto, _name, peer in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if not reachable(str(peer[0])):
            continue
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(peer)
            return sock
        except OSError as failed:
            sock.close()
            error = failed
    raise error


class _Connection(http.client.HTTPConnection):
    connect = _within_timeout(http.client.HTTPConnection.connect)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _reachable_connection


class _SecureConnection(http.client.HTTPSConnection):
    connect = _within_timeout(http.client.HTTPSConnection.connect)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _reachable_connection


class _HTTP(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_Connection, req)


class _HTTPS(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_SecureConnection, req, context=self._context)  # type: ignore[attr-defined]


# No proxy from the environment (``https_proxy``): through one, the address checked would be the
# proxy's, not the receiver's.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect, _HTTP, _HTTPS)
