"""Secrets out of text: camera credentials in URLs (rtsp://user:pass@host/...) and tokens in query strings.

A source's URL reaches error messages (OpenCV cannot open it), statuses and logs. Every such text goes
through `redact` first, so a password typed into a deployment file never leaves it. The log filter of
`engine.serve` applies the same function to every record as a second line of defence.
"""

from __future__ import annotations

import re

# scheme://userinfo@host: the userinfo (user, or user:password) is replaced, the rest of the URL kept
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s?#]+)@")
# token=..., access_token=..., ticket=... in a query string or a form
_QUERY_SECRET = re.compile(r"(?P<key>(?:^|[?&;\s])(?:token|access_token|ticket|password|passwd)=)(?P<value>[^&;\s#\"']*)",
                           re.IGNORECASE)
MASK = "***"


def redact(text: str) -> str:
    """`text` with URL credentials and secret query values replaced by ***."""
    if "@" in text:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: f"{m['key']}{MASK}" if m["value"] else m[0], text)
    return text


def redact_url(url: object) -> str:
    """A source for display: its URL without credentials (anything that is not a string: its repr)."""
    return redact(url) if isinstance(url, str) else type(url).__name__
