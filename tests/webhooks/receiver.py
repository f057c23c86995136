"""A real webhook receiver for the tests: an HTTP server on loopback, in a thread, that answers each request as its
script says (a status, or hang until released) and keeps what it received."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG = "hang"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Answers the n-th request with script[n] (the last entry for every request after); HANG holds the request
    until `release` is set (the test's end sets it)."""

    def __init__(self, script: list[int | str] | None = None) -> None:
        self.script: list[int | str] = list(script or [200])
        self.received: list[Received] = []
        self.arrived = threading.Condition()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.arrived:
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    number = len(receiver.received)
                    receiver.arrived.notify_all()
                answer = receiver.script[min(number, len(receiver.script)) - 1]
                if answer == HANG:
                    receiver.release.wait()
                    return
                self.send_response(int(answer))
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(f"answer {answer} to request {number}".encode())

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def url(self, host: str = "127.0.0.1", path: str = "/hooks") -> str:
        return f"http://{host}:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Block until `count` requests arrived (call from a thread, not the event loop)."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.received) >= count, timeout=timeout):
                raise AssertionError(f"{len(self.received)} of {count} requests arrived within {timeout}s")
            return list(self.received)


@contextmanager
def receiver(script: list[int | str] | None = None) -> Iterator[Receiver]:
    running = Receiver(script)
    thread = threading.Thread(target=running.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.release.set()
        running.server.shutdown()
        running.server.server_close()
