"""Credentials out of every text regtune prints, logs to MLflow or writes to a report.

Storage and tracking URLs reach MLflow params and tags, the console, error messages and
``report.md``; the credentials they carry come in every form SQLAlchemy, libpq and HTTP
clients accept:

- ``scheme://user:password@host`` in any scheme. SQLAlchemy takes a raw password with
  spaces, quotes, ``/``, ``?`` or ``#`` (only ``@`` must be percent-encoded); an HTTP URL
  takes a raw ``@`` (its userinfo runs to the last ``@`` of the authority). So a password
  runs to the last ``@``: masking too much beats leaking the tail of a password.
- ``https://TOKEN@host``: an HTTP userinfo without a colon is a token (basic auth, GitHub,
  ...), masked whole. Other schemes keep their user name (``postgresql://bob@host``).
- query parameters (``?password=...``, ``&sslpassword=...``, ``?token=...``), also inside a
  percent-encoded ODBC string (``odbc_connect=...PWD%3D...``);
- libpq key=value strings (``password=secret``, ``password='it\\'s mine'``) and environment
  assignments (``PGPASSWORD=...``).

A text that is one URL is masked exactly (its password may hold spaces and quotes); so is a
URL quoted the way ``repr`` quotes it (``f"{url!r}"``), which is how regtune's messages show
URLs. In other free text a password with a raw space can only be told from the words after
it by the ``@`` that ends it, so the password runs to the last ``@`` on the line.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

__all__ = ["MASK", "mask_secrets"]

MASK = "***"
_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*://"
_SCHEME_RE = re.compile(_SCHEME)
_URL_START = re.compile(rf"(?<![A-Za-z0-9+.\-]){_SCHEME}")
# Keys whose value is a secret, as query parameters, libpq keywords or environment variables.
_KEY = r"\w*(?:password|passwd|secret|token|api_?key)|pwd"
_QUERY_KEY = re.compile(rf"(?i)^(?:{_KEY})$")
# A percent-encoded key=value inside a parameter's value (ODBC connection strings).
_ENCODED = re.compile(
    rf"(?i)(?P<key>(?:(?<=%3B)|(?<=%26)|(?<![A-Za-z0-9_]))(?:{_KEY})%3D)"
    r"(?:%7B(?:(?!%7D)[^&\s'\"])*(?:%7D)?|(?:(?!%3B|%26)[^&\s'\"])*)"
)

# Free text. R1: a password without spaces or quotes ends at the last '@' of its word.
_WORD_PASSWORD = re.compile(rf"(?P<head>{_SCHEME}[^\s:/@'\"]*:)(?!\*\*\*@)[^\s'\"]*(?=@)")
# R2: one with spaces or quotes runs to the last '@' on its line before the next URL, unless
# what follows the colon is a port ("http://host:5000/path ... bob@example.com").
_LINE_PASSWORD = re.compile(
    rf"(?P<head>{_SCHEME}[^\s:/@'\"]*:)(?!\*\*\*@)(?!\d+(?:[/?#\s'\",;)]|$))(?:(?!{_SCHEME})[^\n])*(?=@)"
)
_HTTP_TOKEN = re.compile(r"(?i)(?P<head>https?://)(?!\*\*\*@)[^\s:/@'\"?#]+(?=@)")
_QUOTED_URL = re.compile(rf"(?P<q>['\"])(?P<url>{_SCHEME}(?:\\.|(?!(?P=q))[^\\\n])*)(?P=q)")
_QUERY_PARAM = re.compile(rf"(?i)(?P<key>[?&;](?:{_KEY})=)(?!\*\*\*(?:[&#\s'\"]|$))[^&#\s'\"]*")
_KEYWORD = re.compile(
    rf"(?i)(?P<key>(?<![\w?&%])(?:{_KEY})\s*=\s*)(?!\*\*\*(?:[\s'\"]|$))"
    r"(?:'(?:[^'\\\n]|\\.)*(?:'|$)|\"(?:[^\"\\\n]|\\.)*(?:\"|$)|\{[^}\n]*\}?"
    # a quoted value inside repr's quotes ('host=h password=\'a b\''): to the last \' of the line
    r"|\\'[^\n]*\\'|\\\"[^\n]*\\\"|(?:\\.|[^\s\\])+)"
)


def mask_secrets(text: str) -> str:
    """``text`` with every password, token and secret query/keyword value replaced by ``***``."""
    if not text:
        return text
    stripped = text.strip()
    if "\n" not in stripped and _SCHEME_RE.match(stripped) and not _URL_START.search(stripped, 1):
        return _KEYWORD.sub(rf"\g<key>{MASK}", _mask_url(text))  # one URL: a param or tag value, a URL alone
    text = _QUOTED_URL.sub(lambda m: m["q"] + _mask_url(m["url"]) + m["q"], text)
    text = _WORD_PASSWORD.sub(rf"\g<head>{MASK}", text)
    text = _LINE_PASSWORD.sub(rf"\g<head>{MASK}", text)
    text = _HTTP_TOKEN.sub(rf"\g<head>{MASK}", text)
    text = _QUERY_PARAM.sub(rf"\g<key>{MASK}", text)
    text = _ENCODED.sub(rf"\g<key>{MASK}", text)
    return _KEYWORD.sub(rf"\g<key>{MASK}", text)


def _mask_url(url: str) -> str:
    """One URL, masked exactly: its userinfo runs to the last '@', its query to the end."""
    scheme = _SCHEME_RE.search(url)
    if scheme is None:
        return url
    head, rest = url[: scheme.end()], url[scheme.end():]
    at = rest.rfind("@")
    if at >= 0:
        userinfo, tail = rest[:at], rest[at:]
        user, colon, _ = userinfo.partition(":")
        if colon and "/" not in user:
            rest = f"{user}:{MASK}{tail}"
        elif not colon and userinfo and head.lower().startswith("http") and not set("/?#") & set(userinfo):
            rest = MASK + tail
    path, question, query = rest.partition("?")
    if question:
        params = [_mask_param(param) for param in query.split("&")]
        rest = path + question + "&".join(params)
    return head + rest


def _mask_param(param: str) -> str:
    key, equals, _ = param.partition("=")
    if equals and _QUERY_KEY.match(unquote_plus(key).strip()):  # SQLAlchemy decodes keys too
        return f"{key}={MASK}"
    return _ENCODED.sub(rf"\g<key>{MASK}", param)
