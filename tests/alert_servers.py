"""Real local servers that stand in for Slack, webhooks, SMS gateways and SMTP."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP receiver on 127.0.0.1: records what it accepts; fails on demand."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    refused: int = 0
    stalled: int = 0                    # requests held unanswered (stall_when)
    fail_status: int | None = None      # answer every request with this status
    fail_every_other: bool = False      # fail every second request (1st, 3rd, ...)
    fail_when: Callable[[Received], int | None] | None = None  # the status to fail one request with
    reason: str | None = None           # reason phrase of a failure (default: the standard one)
    fail_headers: dict[str, str] = field(default_factory=dict)  # headers of a failure (Retry-After)
    redirect_to: str | None = None      # answer every POST with 302 and this Location
    stall_when: Callable[[Received], bool] | None = None  # answer such a request only once released
    released: threading.Event = field(default_factory=threading.Event)  # set when the test is over
    gets: list[str] = field(default_factory=list)  # paths of GET requests (a followed redirect)
    _count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def message_ids(self) -> list[int]:
        return [int(r.headers["X-Pgperfmon-Message-Id"]) for r in self.received]


@contextmanager
def http_receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            request = Received(self.path, dict(self.headers.items()), body)
            if state.stall_when and state.stall_when(request):  # a gateway that hangs
                with state.lock:
                    state.stalled += 1
                state.released.wait(60)
                return
            with state.lock:
                state._count += 1
                fail = state.fail_status or (
                    500 if state.fail_every_other and state._count % 2 == 1 else None) or (
                    state.fail_when(request) if state.fail_when else None) or (
                    302 if state.redirect_to else None)
                if fail:
                    state.refused += 1
                else:
                    state.received.append(request)
            self.send_response(fail or 200, state.reason if fail else None)
            if state.redirect_to:
                self.send_header("Location", state.redirect_to)
            for name, value in (state.fail_headers if fail else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def do_GET(self) -> None:
            with state.lock:
                state.gets.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    """An SMTP server on 127.0.0.1 (no TLS, no login): the envelopes it accepted."""

    port: int = 0
    mails: list[Any] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # recipients answered 550
    defer: set[str] = field(default_factory=set)   # recipients answered 451 (try again later)


@contextmanager
def smtp_receiver(refuse: tuple[str, ...] = ()) -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox(refuse=set(refuse))

    class Handler:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address in box.refuse:
                return "550 no such user here"
            if address in box.defer:
                return "451 4.7.1 greylisted, try again later"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            box.mails.append(envelope)
            return "250 OK"

    with socket.socket() as probe:  # aiosmtpd's start() connects to its port: it cannot be 0
        probe.bind(("127.0.0.1", 0))
        box.port = probe.getsockname()[1]
    # A name of its own: getfqdn() per session would look this host up (see slow_resolver).
    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port, server_hostname="mail.test")
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class Trickler:
    """A receiver on 127.0.0.1 that sends its answers one byte every interval seconds: each
    byte comes well within a socket timeout, the whole answer long after it."""

    port: int = 0
    requests: int = 0   # HTTP requests, or SMTP sessions, it began to answer


def _trickle(client: socket.socket, data: bytes, interval: float) -> bool:
    try:
        for byte in data:
            client.sendall(bytes([byte]))
            time.sleep(interval)
    except OSError:  # the client gave up
        return False
    return True


@contextmanager
def trickling_receiver(protocol: str, interval: float = 0.2) -> Iterator[Trickler]:
    """protocol "http": answers every request 200 OK, trickled; "smtp": a mail server (no TLS,
    no login) that accepts every mail and trickles every reply."""
    state = Trickler()
    listener = socket.create_server(("127.0.0.1", 0))
    state.port = listener.getsockname()[1]

    def http(client: socket.socket, rfile: Any) -> None:
        length = 0
        while (line := rfile.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            length = int(value) if name.lower() == "content-length" else length
        rfile.read(length)
        state.requests += 1
        _trickle(client, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", interval)

    def smtp(client: socket.socket, rfile: Any) -> None:
        state.requests += 1
        if not _trickle(client, b"220 trickle\r\n", interval):
            return
        while line := rfile.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                _trickle(client, b"354 go on\r\n", interval)
                while rfile.readline() not in (b".\r\n", b""):
                    pass
            reply = {b"QUIT": b"221 bye\r\n", b"DATA": b"250 queued\r\n"}.get(verb, b"250 ok\r\n")
            if not _trickle(client, reply, interval) or verb == b"QUIT":
                return

    def serve(client: socket.socket) -> None:
        with client, client.makefile("rb") as rfile:
            client.settimeout(30)
            try:
                (http if protocol == "http" else smtp)(client, rfile)
            except OSError:
                pass

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            threading.Thread(target=serve, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield state
    finally:
        listener.close()


SLOW_HOST = "slow-dns.pgperfmon.test"


@dataclass
class SlowResolver:
    answer: threading.Event  # set: SLOW_HOST resolves (to 127.0.0.1)
    answered: int = 0        # lookups of SLOW_HOST answered so far


@contextmanager
def slow_resolver(most_seconds: float = 30.0, local_name: bool = False) -> Iterator[SlowResolver]:
    """The system resolver, except that SLOW_HOST resolves to 127.0.0.1 only once the test
    sets answer (or after most_seconds): a DNS server that does not answer. With local_name,
    so does the look-up of this host's own name by address (socket.getfqdn's, which an SMTP
    client's EHLO names). The rest of the delivery (connect, request, answer) is real."""
    real, real_by_address = socket.getaddrinfo, socket.gethostbyaddr
    state = SlowResolver(threading.Event())

    def slow() -> None:
        state.answer.wait(most_seconds)
        state.answered += 1

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == SLOW_HOST:
            slow()
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    def gethostbyaddr(name: Any) -> Any:
        if local_name:
            slow()
        return real_by_address(name)

    socket.getaddrinfo, socket.gethostbyaddr = getaddrinfo, gethostbyaddr  # type: ignore[assignment]
    try:
        yield state
    finally:
        state.answer.set()
        socket.getaddrinfo, socket.gethostbyaddr = real, real_by_address  # type: ignore[assignment]


# slow_resolver inside a backend: SLOW_HOST resolves after {seconds} s.
_SLOW_RESOLVER_PY = """
import socket, time
socket._pgperfmon_answered = 0
_real = socket.getaddrinfo
def _slow(host, *args, **kwargs):
    if host == {host!r}:
        time.sleep({seconds})
        socket._pgperfmon_answered += 1
        host = "127.0.0.1"
    return _real(host, *args, **kwargs)
socket.getaddrinfo = _slow
"""


def slow_resolver_in_backend(conn: psycopg.Connection, seconds: float) -> Callable[[], int]:
    """slow_resolver in the backend of conn, for the rest of its session: SLOW_HOST resolves
    to 127.0.0.1 after seconds. Returns a function telling how many lookups were answered."""
    conn.execute(f"DO $py$ {_SLOW_RESOLVER_PY.format(host=SLOW_HOST, seconds=seconds)} $py$ "
                 "LANGUAGE plpython3u")
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))

    def answered() -> int:
        conn.execute("DO $py$ import socket; plpy.notice(str(socket._pgperfmon_answered)) $py$ "
                     "LANGUAGE plpython3u")
        return int(notices[-1])

    return answered


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (the SMTP server's) and its key."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key


def set_config(conn: psycopg.Connection, **values: Any) -> None:
    """Change stored configuration keys (double underscores stand for dots)."""
    for key, value in values.items():
        dotted = key.replace("__", ".")
        cur = conn.execute("UPDATE perfmon.config SET value = %s WHERE key = %s", (Jsonb(value), dotted))
        assert cur.rowcount == 1, f"no configuration key {dotted}"


def add_gauge_rule(conn: psycopg.Connection, name: str = "test_gauge", hold_seconds: int = 0,
                   escalation_minutes: int | None = None, value: float = 0.0) -> None:
    """A rule measuring a table the test controls: adding a rule is adding a row."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS public.{name} (target text PRIMARY KEY, v float8)")
    conn.execute(f"INSERT INTO public.{name} VALUES ('app1', %s)", (value,))
    conn.execute(
        """INSERT INTO perfmon.alert_rules (name, metric, unit, query, comparison, warning_threshold,
               critical_threshold, emergency_threshold, hold_seconds, escalation_minutes,
               business_impact, affected_systems, recommended_actions, description)
           VALUES (%s, 'test.load_pct', 'pct', %s, '>', 70, 90, 98, %s, %s,
                   'checkout is slow for customers', ARRAY['app1', 'database'],
                   'add capacity', 'a gauge the test sets')""",
        (name, f"SELECT target, v, NULL::text, NULL::jsonb FROM public.{name}", hold_seconds,
         escalation_minutes))


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
