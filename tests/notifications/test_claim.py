"""One delivery id is sent once, whoever tries: the claim is one atomic UPDATE, on PostgreSQL
and on SQLite; a redirect is not a delivery; and a webhook's answer, over HTTP or HTTPS, has a
time limit as a whole."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from notifications import delivery as sending
from notifications.models import Channel, Delivery, DeliveryState, Message, Webhook
from tests.receiver import receiving


def pending(url: str) -> Delivery:
    with transaction.atomic():
        webhook = Webhook.objects.create(name=f"hook-{Webhook.objects.count()}", url=url)
        message = Message.objects.create(event="alias.moved", subject="moved", payload={"event": "alias.moved"})
        return Delivery.objects.create(
            message=message, channel=Channel.WEBHOOK, webhook=webhook, next_attempt_at=timezone.now()
        )


@pytest.mark.django_db(transaction=True)
def test_two_workers_trying_one_delivery_send_it_once() -> None:
    with receiving() as receiver:
        delivery = pending(receiver.url)
        start = threading.Barrier(4)
        results: list[Any] = []

        def worker() -> None:
            start.wait()
            try:
                results.append(sending.deliver(delivery.pk))
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(results, key=str) == [None, None, None, DeliveryState.DELIVERED]
    assert receiver.per_delivery() == {str(delivery.pk): 1}
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.DELIVERED, 1)


class Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """A receiver answering with ``handler`` (over TLS with ``tls``) while inside; its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


class Redirect(Quiet):
    def do_POST(self) -> None:
        self.send_response(302)
        self.send_header("Location", "/elsewhere")
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()


@pytest.mark.django_db
def test_a_redirect_is_a_failed_try() -> None:
    with serving(Redirect) as url:
        delivery = pending(url)
        assert sending.deliver(delivery.pk) == DeliveryState.PENDING
    attempt = delivery.attempt_log.get()
    assert (attempt.ok, attempt.status_code) == (False, 302)


class Trickle(Quiet):
    """Answers 200, a byte every tenth of a second: each read is quick, the whole answer is not."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        answer = b"HTTP/1.1 200 OK\r\nX-Slowly: " + b"." * 20 + b"\r\nContent-Length: 0\r\n\r\n"
        try:
            for byte in answer:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass  # the sender gave up


@pytest.mark.django_db
@override_settings(NOTIFY_WEBHOOK_TIMEOUT=1)
def test_an_answer_trickling_in_for_longer_than_the_timeout_is_a_failed_try() -> None:
    with serving(Trickle) as url:
        delivery = pending(url)
        assert sending.deliver(delivery.pk) == DeliveryState.PENDING
    attempt = delivery.attempt_log.get()
    assert (attempt.ok, attempt.status_code) == (False, None)
    assert attempt.error == "TimeoutError: no full answer within 1 s"


class Large(Quiet):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 16))
        self.end_headers()
        self.wfile.write(b"x" * (1 << 16))


def test_an_answer_read_within_the_deadline_is_read_whole() -> None:
    """The deadline's socket stays open for its reader after urllib lets go of the connection."""
    with (
        serving(Large) as url,
        sending._OPENER.open(urllib.request.Request(url, data=b"{}", method="POST"), timeout=5) as answer,
    ):
        assert answer.read() == b"x" * (1 << 16)


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_over_https_an_answer_trickling_in_for_longer_than_the_timeout_is_cut_off(tmp_path: Path) -> None:
    cert_path, key_path = _certificate(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_path, key_path)
    trusting = ssl.create_default_context(cafile=str(cert_path))
    opener = urllib.request.build_opener(sending._NoRedirect, sending._HTTP, sending._HTTPS(context=trusting))
    with serving(Trickle, tls) as url, pytest.raises(TimeoutError, match=r"^no full answer within 1 s$"):
        opener.open(urllib.request.Request(url, data=b"{}", method="POST"), timeout=1)
