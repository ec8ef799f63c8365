"""Credentials never leave in text: URLs lose their userinfo password before they are shown or stored."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:\s]*)(?::[^/@\s]*)?@")


def redact_url(text: str) -> str:
    """Every ``scheme://user:password@host`` in ``text`` becomes ``scheme://host`` (the user goes too: it
    may be a key id).

    >>> redact_url("cannot push to https://bob:s3cret@git.example.org/r.git: denied")
    'cannot push to https://git.example.org/r.git: denied'
    """
    return _USERINFO.sub(lambda m: m.group("scheme"), text)
