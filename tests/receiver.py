"""A real local HTTP server that receives Warden's webhooks and checks their signatures."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from notifications.delivery import sign


class Receiver:
    def __init__(self, secret: str = "", fail_first: int = 0):
        self.secret = secret
        self.fail_first = fail_first  # answer 503 to this many posts first
        self.posts: list[dict[str, Any]] = []
        self.refused = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                delivery, timestamp = self.headers["X-Warden-Delivery"], self.headers["X-Warden-Timestamp"]
                with receiver.lock:
                    if receiver.refused < receiver.fail_first:
                        receiver.refused += 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    receiver.posts.append(
                        {
                            "delivery": delivery,
                            "event": self.headers["X-Warden-Event"],
                            "signed": self.headers["X-Warden-Signature"]
                            == sign(receiver.secret, delivery, timestamp, body),
                            "body": json.loads(body),
                        }
                    )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def events(self) -> list[str]:
        with self.lock:
            return [post["event"] for post in self.posts]

    def per_delivery(self) -> Counter[str]:
        with self.lock:
            return Counter(post["delivery"] for post in self.posts)

    def wait_for(self, count: int, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.posts) >= count:
                return True
            time.sleep(0.1)
        return False


@contextmanager
def receiving(secret: str = "", fail_first: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(secret, fail_first)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
