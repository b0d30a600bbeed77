"""Secrets out of text: the one redaction helper.

Used beside the server (``pgperfmon.db.redact``: every message that may quote a
DSN) and inside it (alert delivery: every error that may quote a webhook URL, a
password or a token). It removes:

- passwords of connection strings: ``password=...`` (quoted or not) and the
  password of ``postgres://user:password@host`` URIs;
- everything after the host of any other URL (webhook and chat URLs carry their
  token in the path or the query), and their user:password;
- the values of the secrets it is given, in the forms an error message may
  quote them: as they are, escaped as by ``repr()``, percent-encoded, base64,
  and, for a URL, each part that may hold the token (user info, path, path
  segments, query, query values), since a library may quote only a part.

Over-redaction is the safe error: a message may lose a harmless word, never
keep a secret.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Iterable

MASK = "***"
MIN_SECRET = 4  # shorter values would mask unrelated text; no real secret is that short

_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s'\"&]+)", re.I)
_URL = re.compile(
    r"\b(?P<scheme>[a-z][a-z0-9+.-]*)://"
    r"(?P<userinfo>[^/?#\s'\"<>]*@)?"
    r"(?P<host>[^/\s?#'\"<>]*)"
    r"(?P<rest>[^\s'\"<>]*)", re.I)
_POSTGRES = {"postgres", "postgresql"}
_HOST_AND_BEFORE = re.compile(r"^[^:]*://[^/?#]*")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]+")


def _url(match: re.Match[str]) -> str:
    scheme, userinfo, host, rest = (match.group("scheme"), match.group("userinfo") or "",
                                    match.group("host"), match.group("rest"))
    if scheme.lower() in _POSTGRES:
        # A DSN: the user, host and database say what failed; only the password goes.
        user, colon, _password = userinfo[:-1].partition(":")
        return f"{scheme}://{user}{':' + MASK if colon else ''}{'@' if userinfo else ''}{host}{rest}"
    return f"{scheme}://{MASK + '@' if userinfo else ''}{host}{'/' + MASK if rest else ''}"


def _forms(value: str) -> set[str]:
    """How an error message may spell one value."""
    forms = {value, repr(value)[1:-1], urllib.parse.quote(value, safe="", errors="surrogatepass"),
             urllib.parse.quote(value, errors="surrogatepass")}
    encoded = value.encode("utf-8", "surrogatepass")
    forms.add(base64.b64encode(encoded).decode())
    return forms


def _parts(secret: str) -> set[str]:
    """The secret and, for a URL, each piece of it that may hold the token."""
    pieces = {secret}
    if "://" in secret:
        try:
            url = urllib.parse.urlsplit(secret.strip())
            password = url.password
        except ValueError:  # e.g. a malformed IPv6 host: what follows the host still goes
            url, password = urllib.parse.urlsplit(secret.replace("[", "").replace("]", "")), None
        path_query = url.path + ("?" + url.query if url.query else "")
        pieces |= {url.netloc.rpartition("@")[0], password or "", path_query, url.path, url.query,
                   url.fragment}
        pieces |= set(url.path.split("/"))
        pieces |= {v for pair in url.query.split("&") for v in pair.partition("=")[::2]}
        # What follows the host as written: urlsplit drops tabs and line breaks, which an
        # error quoting the URL (http.client's "can't contain control characters") keeps.
        rest = _HOST_AND_BEFORE.sub("", secret, count=1)
        pieces |= {rest, *re.split(r"[/?#&=]", rest)}
        pieces |= {urllib.parse.unquote(p) for p in list(pieces)}
        # Around stray whitespace and control characters.
        pieces |= {word for p in list(pieces) for word in _SPACE_OR_CONTROL.split(p)}
    return {form for piece in pieces if piece for form in _forms(piece)}


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without connection-string passwords, URL tokens or any of ``secrets``."""
    if not text:
        return text
    masks = {form for s in secrets if s for form in _parts(s) if len(form) >= MIN_SECRET}
    for form in sorted(masks, key=len, reverse=True):
        text = text.replace(form, MASK)
    text = _URL.sub(_url, text)
    return _CONNINFO_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
