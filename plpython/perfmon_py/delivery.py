"""Alert delivery: one message of perfmon.alert_outbox to Slack, a webhook, email or SMS.

Used inside the server (perfmon.deliver_next, run by the procedure
perfmon.deliver_alerts under pg_cron) and beside it (``pgperfmon deliver``).
Both go through a *store* with three calls (channel settings, claim one message,
record its outcome) and commit after each message, so a message is claimed with
FOR UPDATE SKIP LOCKED by one worker only and its outcome is on record as soon
as the receiver has it.

Secrets are read from the environment variables the configuration names
(``secret_env``, ``signing_secret_env``); they never reach a table, a log or an
error message: every error text passes through :func:`scrub`.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import hashlib
import hmac
import http.client
import io
import json
import os
import signal
import smtplib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

from perfmon_py.redact import redact
from perfmon_py.slots import nap

USER_AGENT = "pgperfmon-alerts/1"
LEVEL_COLOURS = {"info": "#439FE0", "warning": "#E8A317", "critical": "#D00000", "emergency": "#7B0000"}


class Store(Protocol):
    """Where messages come from and outcomes go: perfmon's SQL functions."""

    def channels(self) -> list[dict[str, Any]]: ...

    def claim(self, channels: list[str]) -> dict[str, Any] | None: ...

    def result(self, message_id: int, ok: bool, status_code: int | None, error: str | None,
               duration_ms: float, worker: str, retry_after_s: float | None = None,
               recipients_left: list[str] | None = None) -> str: ...


@dataclass
class Sent:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None  # the receiver's Retry-After: no retry before it
    recipients_left: list[str] | None = None  # others accepted it: retry to these only


class DeliveryError(Exception):
    """A send failed; the message (already scrubbed) says why."""

    def __init__(self, message: str, status_code: int | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.retry_after_s = retry_after_s


# --------------------------------------------------------------------------- redaction

def scrub(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Remove secret values (and the parts of a URL that may hold a token) and everything
    after the host of any URL: perfmon_py.redact, the one redaction helper; then the
    characters that are not printable (see :func:`printable`)."""
    return printable(redact(text, secrets))


def printable(text: str) -> str:
    """Control and other unprintable characters as spaces. A receiver's reply is quoted in
    errors: a NUL in it (``503 busy\\0now``) cannot be stored as text, and a line break or
    an escape sequence would forge lines of a log or a header."""
    return "".join(c if c.isprintable() else " " for c in text)


def _secret(settings: Mapping[str, Any], key: str, env: Mapping[str, str]) -> str | None:
    name = settings.get(key)
    return env.get(name) if name else None


def needed_secrets(settings: Mapping[str, Any]) -> list[str]:
    """Names of the environment variables a channel cannot send without."""
    names = [settings.get("secret_env")]
    if "signing_secret_env" in settings:
        names.append(settings.get("signing_secret_env"))
    return [n for n in names if n]


def missing_secrets(settings: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    return [n for n in needed_secrets(settings) if not env.get(n)]


# --------------------------------------------------------------------------- formatting

def is_report(message: Mapping[str, Any]) -> bool:
    """A scheduled or manual executive report (perfmon.queue_report), not an alert."""
    return message["payload"].get("kind") == "report"


def _shown(value: Any) -> str:
    """A payload field as text; NULL (a rule's column, a JSON null) as "-", never a crash."""
    return "-" if value is None else str(value)


def _listed(values: Any) -> str:
    """A list field (affected_systems) as "a, b": its NULL elements skipped."""
    if not isinstance(values, list):
        return _shown(values)
    return ", ".join(str(v) for v in values if v is not None) or "-"


def text_of(message: Mapping[str, Any]) -> str:
    """One line: what happened, where, how bad."""
    p = message["payload"]
    event = p.get("event", message.get("event"))
    if is_report(message):
        return f"{_shown(p.get('summary'))} [{_shown(p.get('database'))}]"
    prefix = {"resolved": "RESOLVED", "escalated": f"ESCALATED (level {_shown(p.get('escalation_level'))})",
              "level_raised": "LEVEL RAISED"}.get(event, "")
    return f"{prefix + ': ' if prefix else ''}{_shown(p.get('summary'))} [{_shown(p.get('database'))}]"


def details_of(message: Mapping[str, Any]) -> list[tuple[str, str]]:
    p = message["payload"]
    if is_report(message):
        from perfmon_py import report_digest

        period = str(p.get("period") or "weekly")
        return [*report_digest.lines(p.get("report") or {}),
                ("Full report", f"pgperfmon report --period {period} --format html --output report.html")]
    fields = [
        ("Level", _shown(p.get("level"))),
        ("State", _shown(p.get("state"))),
        ("Metric", _shown(p.get("metric"))),
        ("Target", _shown(p.get("target"))),
        ("Current value", f"{_shown(p.get('current_value'))} {p.get('unit') or ''}".strip()),
        ("Threshold", f"{p.get('comparison') or ''} {p.get('threshold')}".strip()
         if p.get("threshold") is not None else "-"),
        ("Since", _shown(p.get("ts"))),
        ("Business impact", _shown(p.get("business_impact"))),
        ("Affected systems", _listed(p.get("affected_systems"))),
        ("Recommended actions", _shown(p.get("recommended_actions"))),
        ("Escalation required", "yes" if p.get("escalation_required") else "no"),
        ("Alert", f"#{_shown(p.get('alert_id'))} ({_shown(p.get('fingerprint'))})"),
    ]
    return fields


def slack_escaped(text: str) -> str:
    """Slack reads &, < and > in message text as its controls: <!channel> notifies a whole
    channel, <url|label> is a link. A target or detail from the database (a table, a host,
    an agent's own name) is sent as entities, so that it is shown, never obeyed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(message: Mapping[str, Any]) -> dict[str, Any]:
    """Slack's incoming-webhook format: text (the notification) and blocks."""
    p = message["payload"]
    text = slack_escaped(text_of(message))
    fields = [{"type": "mrkdwn", "text": f"*{slack_escaped(str(k))}*\n{slack_escaped(str(v))}"}
              for k, v in details_of(message)]
    return {
        "text": text,
        "blocks": [
            # plain_text is shown as it is: no controls to escape.
            {"type": "header", "text": {"type": "plain_text", "text": text_of(message)[:150]}},
            # Slack allows at most 10 fields per section.
            {"type": "section", "fields": fields[:10]},
        ] + [{"type": "section", "fields": fields[i:i + 10]} for i in range(10, len(fields), 10)],
        "attachments": [{"color": LEVEL_COLOURS.get(str(p.get("level")), "#808080"), "fallback": text}],
    }


def webhook_body(message: Mapping[str, Any]) -> bytes:
    body = {"message_id": message["message_id"], "event": message["event"],
            "attempt": message["attempt"],
            "report" if is_report(message) else "alert": message["payload"]}
    return json.dumps(body, sort_keys=True, default=str).encode()


def signature(key: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", hex: the X-Pgperfmon-Signature header (sha256=...)."""
    mac = hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


# --------------------------------------------------------------------------- senders

class Deadline:
    """One time limit for a whole attempt. A socket's timeout bounds each connect, send or
    receive on its own: a receiver that trickles a byte every few seconds never trips it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError(self.exceeded())
        return left

    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def exceeded(self) -> str:
        return f"timed out: no complete answer within the delivery timeout of {self.seconds:g} s"


class _Lookup:
    """One blocking look-up of the system resolver (a host's addresses, this host's own name)
    in a thread of its own, which the attempts that need it wait for only as long as their
    deadline allows. The system resolver has no timeout
    of ours: a DNS server that does not answer would hold the worker for as long as
    /etc/resolv.conf's timeouts and attempts add up to."""

    def __init__(self, call: Callable[..., Any], args: tuple[Any, ...]):
        self.call, self.args = call, args
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    @classmethod
    def run(cls, deadline: Deadline, call: Callable[..., Any], *args: Any) -> Any:
        # An attempt that gave up leaves its look-up running: the next attempt of that host
        # waits for the same one rather than start another, so a hung resolver does not
        # gather a thread per attempt.
        with _LOOKUPS_LOCK:
            lookup = _LOOKUPS.get((call, *args))
            if lookup is None:
                lookup = _LOOKUPS[(call, *args)] = cls(call, args)
                threading.Thread(target=lookup._work, name="pgperfmon-lookup", daemon=True).start()
        if not lookup.done.wait(deadline.left()):
            raise TimeoutError(deadline.exceeded())
        if lookup.error is not None:
            raise lookup.error
        return lookup.value

    def _work(self) -> None:
        # Signals go to the thread that runs the worker (inside the server: the backend's
        # own, whose handlers PostgreSQL set up), never to this one.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self.value = self.call(*self.args)
        except BaseException as exc:  # handed to the attempts waiting for it
            self.error = exc
        finally:
            with _LOOKUPS_LOCK:
                del _LOOKUPS[(self.call, *self.args)]
            self.done.set()


_LOOKUPS: dict[tuple[Any, ...], _Lookup] = {}  # those running, by call and arguments
_LOOKUPS_LOCK = threading.Lock()


def connect_by_deadline(address: tuple[str, int], deadline: Deadline,
                        source: tuple[str, int] | None = None) -> socket.socket:
    """socket.create_connection with the host name's look-up, and each address's connect,
    within the deadline."""
    host, port = address
    addresses = _Lookup.run(deadline, socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    error: OSError = OSError(f"getaddrinfo returned no address for port {port}")
    for family, kind, proto, _, sockaddr in addresses:
        left = deadline.left()
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(left)
            if source:
                sock.bind(source)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


class _DeadlineReader(io.RawIOBase):
    """What a socket's makefile('rb') reads, each receive given only the time left."""

    def __init__(self, sock: socket.socket, deadline: Deadline):
        self.sock, self.deadline = sock, deadline
        self.raw = sock.makefile("rb", buffering=0)  # counts as a user of the socket, as makefile does

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self.sock.settimeout(self.deadline.left())
        return self.raw.readinto(buffer)

    def close(self) -> None:
        self.raw.close()
        super().close()


class DeadlineSocket:
    """A connected socket whose sends and receives (through makefile) share one deadline.
    The rest is the socket's own; an SSL context wraps it as a socket, its handshake
    bounded by the time left (gettimeout)."""

    def __init__(self, sock: socket.socket, deadline: Deadline):
        self.sock, self.deadline = sock, deadline

    def sendall(self, data: Any) -> None:
        self.sock.settimeout(self.deadline.left())
        self.sock.sendall(data)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        if mode not in ("r", "rb"):
            raise ValueError(f"a DeadlineSocket reads only, not {mode!r}")
        return io.BufferedReader(_DeadlineReader(self.sock, self.deadline))

    def gettimeout(self) -> float:
        return self.deadline.left()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class _DeadlineConnection(http.client.HTTPConnection):
    """http.client's connection, its whole exchange (connect, TLS handshake, request,
    answer) within one deadline of its timeout."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.deadline = Deadline(float(self.timeout))
        self._create_connection = self._connect_by_deadline

    def _connect_by_deadline(self, address: Any, _timeout: Any, source: Any = None) -> DeadlineSocket:
        return DeadlineSocket(connect_by_deadline(address, self.deadline, source), self.deadline)

    def connect(self) -> None:
        super().connect()
        if not isinstance(self.sock, DeadlineSocket):  # the TLS socket that wrapped it
            self.sock = DeadlineSocket(self.sock, self.deadline)


class _DeadlineHTTPSConnection(_DeadlineConnection, http.client.HTTPSConnection):
    pass


def _local_hostname() -> str:
    """This host's name as smtplib finds it for EHLO when it is given none."""
    fqdn = socket.getfqdn()
    if "." in fqdn:
        return fqdn
    try:
        return f"[{socket.gethostbyname(socket.gethostname())}]"
    except socket.gaierror:
        return "[127.0.0.1]"


class _DeadlineSMTP(smtplib.SMTP):
    """smtplib's client, its whole session (connect, STARTTLS, login, the mail) by one deadline."""

    def __init__(self, host: str, port: int, deadline: Deadline):
        self.deadline = deadline
        # The name its EHLO gives: smtplib would look it up (getfqdn) beyond the deadline.
        super().__init__(host, port, _Lookup.run(deadline, _local_hostname), timeout=deadline.seconds)

    def _get_socket(self, host: str, port: int, timeout: float) -> Any:
        return DeadlineSocket(connect_by_deadline((host, port), self.deadline, self.source_address),
                              self.deadline)

    def starttls(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        reply = super().starttls(*args, **kwargs)
        if not isinstance(self.sock, DeadlineSocket):  # the TLS socket that wrapped it
            self.sock = DeadlineSocket(self.sock, self.deadline)
        return reply


class _DeadlineHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_DeadlineConnection, req)


class _DeadlineHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_DeadlineHTTPSConnection, req, context=self._context)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is a failure: urllib would re-send the POST as a GET without its body, and
    the 200 of that GET marked delivered a message nobody received."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect, _DeadlineHTTPHandler, _DeadlineHTTPSHandler)


def _host_of(url: str, location: str | None) -> str:
    """host[:port] a redirect points to; not the rest, which may hold a token."""
    try:
        target = urllib.parse.urlsplit(urllib.parse.urljoin(url, location or ""))
        return f"{target.hostname or '?'}{f':{target.port}' if target.port else ''}"
    except ValueError:
        return "?"


_ODD_CHARACTERS = {"\t": "a tab", "\n": "a line break", "\r": "a line break", " ": "a space"}


def url_problem(url: str) -> str | None:
    """What makes a URL unusable for a POST, in words that quote no part of it (None: nothing).
    urllib's own complaints quote the URL - its path with a tab, the host of https://[host]/... -
    and a webhook URL is a secret."""
    odd = next((c for c in url if c.isspace() or not c.isprintable()), None)
    if odd is not None:
        return f"it holds {_ODD_CHARACTERS.get(odd, 'a control character')}"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "its host cannot be parsed (a [bracketed] host must be an IPv6 address)"
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return "its port is not a number from 0 to 65535"
    if parts.scheme.lower() not in ("http", "https"):
        return "it is not an http:// or https:// URL"
    if not parts.hostname:
        return "it names no host"
    return None


RETRY_AFTER_STATUSES = (429, 503)
_LONGEST_RETRY_AFTER = 10 ** 9  # s; outbox_result waits at most alerting.retry_max_seconds anyway


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a Retry-After header asks to wait: delta-seconds or an HTTP-date (RFC 9110
    10.2.3); None when there is none or it is neither."""
    value = (value or "").strip()
    if value.isascii() and value.isdigit():
        return float(min(int(value[:12]), _LONGEST_RETRY_AFTER))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as HTTP dates are
        when = when.replace(tzinfo=datetime.timezone.utc)
    ahead = (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    return float(min(max(0.0, ahead), _LONGEST_RETRY_AFTER))


def _post(url: str, body: bytes, headers: dict[str, str], deadline: Deadline, secrets: list[str],
          url_name: str) -> int:
    """POST body to url, the whole exchange within what is left of the deadline."""
    problem = url_problem(url)
    if problem:
        raise DeliveryError(f"the URL in {url_name} is malformed: {problem}; nothing was sent")
    try:
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"User-Agent": USER_AGENT, **headers})
        with _OPENER.open(request, timeout=deadline.left()) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        text = f"HTTP {exc.code} {exc.reason}"
        retry_after = None
        if 300 <= exc.code < 400:
            location = exc.headers.get("Location") if exc.headers else None
            text += f": redirected to {_host_of(url, location)} (redirects are not followed)"
        elif exc.code in RETRY_AFTER_STATUSES and exc.headers:
            retry_after = retry_after_seconds(exc.headers.get("Retry-After"))
        text = scrub(text, secrets)
        if retry_after is not None:
            text += f"; Retry-After {retry_after:.0f} s"
        raise DeliveryError(text, exc.code, retry_after) from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise DeliveryError(deadline.exceeded()) from None
        raise DeliveryError(scrub(f"{type(exc).__name__}: {reason}", secrets)) from None


def _deadline_of(settings: Mapping[str, Any]) -> Deadline:
    """The deadline of one attempt: alerting.delivery_timeout_seconds from now."""
    return Deadline(float(settings.get("timeout_seconds", 10)))


def _common_headers(message: Mapping[str, Any]) -> dict[str, str]:
    # The idempotency key: a receiver that sees a message id twice may drop the second.
    return {"X-Pgperfmon-Message-Id": str(message["message_id"]),
            "X-Pgperfmon-Event": str(message["event"])}


def send_slack(message: Mapping[str, Any], settings: Mapping[str, Any], env: Mapping[str, str]) -> int:
    url = _secret(settings, "secret_env", env) or ""
    body = json.dumps(slack_body(message), default=str).encode()
    return _post(url, body, {"Content-Type": "application/json", **_common_headers(message)},
                 _deadline_of(settings), [url], str(settings.get("secret_env")))


def send_webhook(message: Mapping[str, Any], settings: Mapping[str, Any], env: Mapping[str, str]) -> int:
    url = _secret(settings, "secret_env", env) or ""
    key = _secret(settings, "signing_secret_env", env) or ""
    body = webhook_body(message)
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Pgperfmon-Timestamp": stamp,
               "X-Pgperfmon-Signature": signature(key, stamp, body), **_common_headers(message)}
    return _post(url, body, headers, _deadline_of(settings), [url, key], str(settings.get("secret_env")))


def send_sms(message: Mapping[str, Any], settings: Mapping[str, Any],
             env: Mapping[str, str]) -> int | Sent:
    """Twilio-style: one form post of To, From, Body per recipient, basic auth sid:token."""
    token = _secret(settings, "secret_env", env) or ""
    url = settings.get("gateway_url")
    if not url or not settings.get("recipients"):
        raise DeliveryError("sms channel needs alerting.channels.sms.gateway_url and recipients")
    recipients = recipients_to_send(message, settings)
    if not recipients:
        return Sent(True, None, NO_RECIPIENT_LEFT)
    auth = base64.b64encode(f"{settings.get('account_sid') or ''}:{token}".encode()).decode()
    # One deadline for the attempt, not one per recipient: a gateway that hangs would hold
    # it for as many timeouts as there are recipients.
    deadline = _deadline_of(settings)
    status, accepted, refused, retry_after = 0, [], [], None
    for to in recipients:
        if retry_after is not None:  # the gateway asked to be left alone: not now
            refused.append(Refusal(to, "not sent: the gateway asked to wait (Retry-After)", True))
            continue
        if deadline.passed():  # retried with those the gateway did not answer in time
            refused.append(Refusal(to, f"not sent: the delivery timeout of {deadline.seconds:g} s "
                                       "was used up", True))
            continue
        form = urllib.parse.urlencode({"To": to, "From": settings.get("sender") or "",
                                       "Body": text_of(message)[:1600]}).encode()
        try:
            status = _post(url, form, {"Content-Type": "application/x-www-form-urlencoded",
                                       "Authorization": f"Basic {auth}", **_common_headers(message)},
                           deadline, [token, auth],
                           "alerting.channels.sms.gateway_url")
            accepted.append(to)
        except DeliveryError as exc:
            refused.append(Refusal(to, str(exc), http_refusal_is_temporary(exc.status_code),
                                   exc.status_code))
            retry_after = exc.retry_after_s
    return recipients_outcome(message, status, recipients, accepted, refused, retry_after)


NO_RECIPIENT_LEFT = "none of the recipients it was still to reach is configured any more"


@dataclass
class Refusal:
    recipient: str
    why: str
    temporary: bool  # refused for now (retried), or for good (noted only)
    status_code: int | None = None


def http_refusal_is_temporary(status_code: int | None) -> bool:
    """No answer, a timeout (408), too early (425), too many requests (429) or the gateway's
    own trouble (5xx): a later attempt may succeed. Any other 4xx (a bad number, bad
    credentials) or a redirect will be refused again."""
    return status_code is None or status_code in (408, 425, 429) or status_code >= 500


def recipients_to_send(message: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    """The channel's recipients; on a retry after others accepted the message, only those it
    is still to reach (and still configured)."""
    recipients = [str(r) for r in settings.get("recipients") or []]
    left = message.get("recipients_left")
    return recipients if left is None else [r for r in recipients if r in left]


def recipients_outcome(message: Mapping[str, Any], status: int, tried: list[str], accepted: list[str],
                       refused: list[Refusal], retry_after: float | None = None) -> int | Sent:
    """The outcome of sending to several recipients. Refused by all that were tried, and no
    earlier attempt reached anyone: a failure, retried to all. Otherwise those who accepted
    it have it and are never sent it again: the message is delivered, its refusals noted,
    unless some were refused for now - then it stays pending, retried to those only."""
    if not refused:
        return status
    earlier = message.get("recipients_left") is not None
    if not accepted and not earlier:
        raise DeliveryError("; ".join(f"{r.recipient}: {r.why}" for r in refused), refused[-1].status_code,
                            retry_after)
    later = [r.recipient for r in refused if r.temporary]
    note = f"delivered to {len(accepted)} of {len(tried)} recipients{' left' if earlier else ''}"
    if later:
        note += "; refused for now, retried: " + "; ".join(
            f"{r.recipient}: {r.why}" for r in refused if r.temporary)
    if len(later) < len(refused):
        note += "; refused: " + "; ".join(f"{r.recipient}: {r.why}" for r in refused if not r.temporary)
    return Sent(not later, status if accepted else refused[-1].status_code, note,
                retry_after if later else None, later or None)


def send_email(message: Mapping[str, Any], settings: Mapping[str, Any],
               env: Mapping[str, str]) -> int | Sent:
    password = _secret(settings, "secret_env", env)
    recipients = settings.get("recipients") or []
    if not recipients:
        raise DeliveryError("email channel needs alerting.channels.email.recipients")
    targets = recipients_to_send(message, settings)
    if not targets:
        return Sent(True, None, NO_RECIPIENT_LEFT)
    mail = EmailMessage()
    # A target may hold line breaks (a table named "a\nb"): a header may not.
    mail["Subject"] = printable(text_of(message))[:200]
    mail["From"] = settings.get("sender") or "pgperfmon@localhost"
    mail["To"] = ", ".join(recipients)  # on a retry too: the envelope (targets) says who gets it
    mail["Message-ID"] = f"<pgperfmon-{message['message_id']}@{settings.get('smtp_host')}>"
    mail.set_content("\n".join(f"{k}: {v}" for k, v in details_of(message)) + "\n")
    # AUTH PLAIN sends base64("\0user\0password"): a server's reply may echo it.
    secrets = [password, f"\0{settings.get('username') or ''}\0{password}"] if password else []
    deadline = _deadline_of(settings)
    try:
        with _DeadlineSMTP(settings.get("smtp_host") or "localhost", int(settings.get("smtp_port") or 25),
                           deadline) as smtp:
            smtp.ehlo()
            if settings.get("starttls", True):
                context = ssl.create_default_context(cafile=settings.get("ca_file") or None)
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings.get("username"):
                smtp.login(settings["username"], password or "")
            # Some recipients refused are returned; every one raises SMTPRecipientsRefused.
            try:
                refused = smtp.send_message(mail, to_addrs=targets)
            except smtplib.SMTPRecipientsRefused as exc:
                refused = exc.recipients
            # A 4xx refusal (greylisting, a full mailbox) is for now: retried; a 5xx is for good.
            return recipients_outcome(message, 250, targets, [t for t in targets if t not in refused], [
                Refusal(to, scrub(f"SMTP {code} {reply.decode(errors='replace')}", secrets),
                        400 <= code < 500, code)
                for to, (code, reply) in sorted(refused.items())])
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(scrub(f"SMTP {exc.smtp_code} {exc.smtp_error!r}", secrets),
                            exc.smtp_code) from None
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        # smtplib reports a timeout while it reads a reply as "Connection unexpectedly closed".
        if isinstance(exc, TimeoutError) or deadline.passed():
            raise DeliveryError(f"SMTP {deadline.exceeded()}") from None
        raise DeliveryError(scrub(f"{type(exc).__name__}: {exc}", secrets)) from None


# A sender returns the receiver's status code, or a Sent (some recipients refused: delivered
# with a note, or pending with the recipients to retry); it raises DeliveryError when nothing
# was delivered.
SENDERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, str]], int | Sent]] = {
    "perfmon_py.delivery.send_slack": send_slack,
    "perfmon_py.delivery.send_webhook": send_webhook,
    "perfmon_py.delivery.send_email": send_email,
    "perfmon_py.delivery.send_sms": send_sms,
}


def resolve_sender(dotted: str) -> Callable[..., int | Sent]:
    """The channel registry names its sender as module.function."""
    if dotted in SENDERS:
        return SENDERS[dotted]
    module_name, _, func = dotted.rpartition(".")
    import importlib

    return getattr(importlib.import_module(module_name), func)


# --------------------------------------------------------------------------- the worker

def claimable_channels(store: Store, env: Mapping[str, str],
                       only: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The channels this worker claims messages of: enabled, and with every secret in env."""
    return {c["channel"]: c for c in store.channels()
            if c["settings"].get("enabled") and not missing_secrets(c["settings"], env)
            and (only is None or c["channel"] in only)}


def deliver_one(store: Store, worker: str, env: Mapping[str, str] | None = None,
                only: list[str] | None = None) -> dict[str, Any] | None:
    """Claim, send and record one due message; None when nothing is due.

    Only channels that are enabled and whose secrets this worker's environment
    holds are claimed: a message another worker can send is left for it.
    """
    env = os.environ if env is None else env
    channels = claimable_channels(store, env, only)
    if not channels:
        return None
    message = store.claim(sorted(channels))
    if message is None:
        return None
    channel = channels[message["channel"]]
    settings = channel["settings"]
    secrets = [env.get(n, "") for n in needed_secrets(settings)]
    start = time.perf_counter()
    try:
        code = resolve_sender(channel["sender"])(message, settings, env)
        sent = Sent(True, code) if not isinstance(code, Sent) else \
            Sent(code.ok, code.status_code, scrub(code.error, secrets) if code.error else None,
                 code.retry_after_s, code.recipients_left)
    except DeliveryError as exc:
        sent = Sent(False, exc.status_code, scrub(str(exc), secrets), exc.retry_after_s)
    except Exception as exc:  # a bug in a sender must not stop the queue
        sent = Sent(False, None, scrub(f"{type(exc).__name__}: {exc}", secrets))
    ms = (time.perf_counter() - start) * 1000
    try:
        status = store.result(message["message_id"], sent.ok, sent.status_code, sent.error, ms, worker,
                              sent.retry_after_s, sent.recipients_left)
    except Exception as exc:
        # An outcome the database refuses must not stop the queue: unrecorded, the message
        # would stay claimable with no attempt counted, re-sent and failing on every start.
        sent = Sent(False, None, f"the outcome could not be recorded ({type(exc).__name__})")
        status = store.result(message["message_id"], sent.ok, sent.status_code, sent.error, ms, worker)
    return {"message_id": message["message_id"], "channel": message["channel"], "ok": sent.ok,
            "status": status, "status_code": sent.status_code, "error": sent.error,
            "ms": round(ms, 1)}


class PlpyStore:
    """The store inside the server, through PL/Python's plpy."""

    def __init__(self, plpy: Any):
        self.plpy = plpy

    def channels(self) -> list[dict[str, Any]]:
        rows = self.plpy.execute("select channel, sender, settings from perfmon.channel_settings()")
        return [{"channel": r["channel"], "sender": r["sender"], "settings": json.loads(r["settings"])}
                for r in rows]

    def claim(self, channels: list[str]) -> dict[str, Any] | None:
        plan = self.plpy.prepare("select * from perfmon.outbox_claim($1)", ["text[]"])
        rows = self.plpy.execute(plan, [channels])
        if not rows:
            return None
        row = dict(rows[0])
        row["payload"] = json.loads(row["payload"])
        return row

    def result(self, message_id: int, ok: bool, status_code: int | None, error: str | None,
               duration_ms: float, worker: str, retry_after_s: float | None = None,
               recipients_left: list[str] | None = None) -> str:
        plan = self.plpy.prepare("select perfmon.outbox_result($1, $2, $3, $4, $5, $6, $7, $8) as s",
                                 ["bigint", "boolean", "integer", "text", "real", "text", "float8", "text[]"])
        # A subtransaction: if the outcome cannot be stored, the claim still holds (deliver_one).
        with self.plpy.subtransaction():
            return self.plpy.execute(plan, [message_id, ok, status_code, error, duration_ms, worker,
                                            retry_after_s, recipients_left])[0]["s"]


def work_outbox(plpy, max_seconds: float, max_messages: int) -> int:
    """The in-database worker (procedure perfmon.deliver_alerts): send due messages one by
    one through perfmon.deliver_next, committing each; with max_seconds > 0 keep looking
    at the outbox every alerting.delivery_poll_seconds until then. It waits holding no
    snapshot (perfmon_py.slots). Returns how many messages it sent."""
    # No channel on: nothing will ever be due, so do not hold a pg_cron worker for it.
    channels_on = plpy.execute("SELECT EXISTS (SELECT FROM perfmon.config AS c "
                               "WHERE c.key LIKE 'alerting.channels.%.enabled' AND c.value = 'true') AS on")
    if not channels_on[0]["on"]:
        return 0
    poll = plpy.execute("SELECT perfmon.setting('alerting.delivery_poll_seconds')::float8 AS s")[0]["s"]
    deadline = time.monotonic() + max_seconds
    sent = 0
    while sent < max_messages:
        outcome = plpy.execute("SELECT perfmon.deliver_next('database') AS o")[0]["o"]
        plpy.commit()
        if outcome is not None:
            sent += 1
            continue
        if time.monotonic() + poll >= deadline:
            break
        nap(plpy, poll)
    return sent
