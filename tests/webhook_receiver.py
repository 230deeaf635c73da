"""A real HTTP webhook receiver on 127.0.0.1 (threaded http.server, keep-alive) for tests and the
benchmark: records every request and answers from a per-path script (status, headers, body). A slow
peer is a scripted reply held on a ``release`` event: it is recorded at once and answered only when the
test sets the event (``stop()`` releases every held reply), so nothing depends on how slow "slow" is."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when the body was read

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    release: threading.Event | None = None  # answer only once this is set (a peer that hangs)


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.scripts: dict[str, list[Reply]] = defaultdict(list)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.on_receive: Any = None
        self._held: list[threading.Event] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:  # the benchmark reads back (position, receive time) pairs
                with receiver.lock:
                    rows = [[json.loads(r.body).get("position"), r.at, r.path] for r in receiver.received]
                    if self.path.startswith("/reset"):
                        receiver.received.clear()
                data = json.dumps(rows).encode()
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(data)}\r\n\r\n".encode()
                    + data
                )

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                rec = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
                with receiver.cond:
                    receiver.received.append(rec)
                    script = receiver.scripts.get(self.path)
                    reply = script.pop(0) if script else Reply()
                    receiver.cond.notify_all()
                if receiver.on_receive is not None:
                    receiver.on_receive(rec)
                if reply.release is not None:
                    reply.release.wait()
                try:  # one write: status line, headers and body
                    try:
                        phrase = HTTPStatus(reply.status).phrase
                    except ValueError:
                        phrase = "Status"
                    head = f"HTTP/1.1 {reply.status} {phrase}\r\n"
                    for k, v in {**reply.headers, "content-length": str(len(reply.body))}.items():
                        head += f"{k}: {v}\r\n"
                    self.wfile.write(head.encode() + b"\r\n" + reply.body)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="webhook-receiver", daemon=True
        )

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.lock:
            held, self._held = self._held, []
        for release in held:  # a handler still holding its answer finishes (its client is long gone)
            release.set()
        self.server.shutdown()
        self.server.server_close()

    def script(self, path: str, *replies: Reply) -> None:
        with self.lock:
            self.scripts[path].extend(replies)
            self._held += [r.release for r in replies if r.release is not None]

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [r for r in self.received if r.path == path]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{path}: {len(got)} of {count} requests after {timeout}s")
                self.cond.wait(left)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """``python tests/webhook_receiver.py PORT_FILE``: serve until killed, write the port to PORT_FILE."""
    import sys
    from pathlib import Path

    r = Receiver()
    Path(sys.argv[1]).write_text(str(r.port))
    r.server.serve_forever()


if __name__ == "__main__":
    main()
