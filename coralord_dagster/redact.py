"""Credentials never leave in text: URLs lose their userinfo before they are shown, and a URL that carries
credentials is refused before it is stored anywhere.

Why refuse rather than strip: a setting is stored before any code of ours sees it (Dagster keeps resource
configuration in its run storage; a remote URL goes into ``.git/config``; a storage URL into
``coralord.toml`` and every manifest's part URLs), so the only safe place for a secret is where it already
is: the environment, ``CORALORD_STORAGE_OPTIONS``, a Git credential helper or an SSH key.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from coralord_dagster.errors import ConfigError

# ``scheme://user[:password]@``. A password may hold '/' and '+' (AWS secret keys do), so it runs to the
# '@', unless what follows the ':' is a port and a path (``https://host:8443/a@b`` has no userinfo).
_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:\s]*)"
    r"(?P<password>:(?:[^/@\s]*|(?!\d*/)[^@\s]*))?@"
)


def redact_url(text: str) -> str:
    """Every ``scheme://user:password@host`` in ``text`` becomes ``scheme://host`` (the user goes too: it
    may be a key id).

    >>> redact_url("cannot push to https://bob:s3cret@git.example.org/r.git: denied")
    'cannot push to https://git.example.org/r.git: denied'
    >>> redact_url("storage s3://AKIAEXAMPLE:wJal/rXU+tn@bucket/x and https://host:8443/a@b")
    'storage s3://bucket/x and https://host:8443/a@b'
    """
    return _USERINFO.sub(lambda m: m.group("scheme"), text)


def url_credentials(url: str, *, user_too: bool = False) -> bool:
    """Whether ``url`` carries a password in its userinfo (any userinfo with ``user_too``)."""
    m = _USERINFO.match(url.strip())
    return m is not None and (user_too or m.group("password") is not None)


def refuse_url_credentials(url: str | None, what: str, *, user_too: bool = False) -> None:
    """Raise :class:`~coralord_dagster.errors.ConfigError` (naming ``url`` redacted) when ``url`` carries
    credentials; Git remotes may keep a user name (``ssh://git@host/r.git``), storage URLs nothing
    (``user_too``).

    >>> refuse_url_credentials("ssh://git@example.org/r.git", "remote")
    >>> refuse_url_credentials("https://bob:s3cret@example.org/r.git", "remote")
    Traceback (most recent call last):
    ...
    coralord_dagster.errors.ConfigError: remote https://example.org/r.git carries credentials ...
    """
    if not url or not url_credentials(url, user_too=user_too):
        return
    if user_too:
        where = (
            "they would be written to the registry (coralord.toml, every part URL) and to Dagster's run "
            "storage; give them to fsspec through CORALORD_STORAGE_OPTIONS (JSON, e.g. "
            '{"key": ..., "secret": ...}) or the AWS_* / FSSPEC_* environment variables'
        )
    else:
        where = (
            "the password would be stored in .git/config and in Dagster's run storage; give it to Git "
            "through a credential helper (git config credential.helper), GIT_ASKPASS or an SSH key"
        )
    userinfo = "user:password@" if url_credentials(url) else "user@"
    raise ConfigError(f"{what} {redact_url(url.strip())} carries credentials ({userinfo}); {where}")


# Parts of option names that mark a credential, found anywhere in the name with separators and case
# ignored ('accountKey', 'AWS_SECRET_ACCESS_KEY', 'sas_token'); the short ones only as a whole word.
_SECRET_PARTS = (
    "secret", "password", "passwd", "token", "credential", "session", "cookie", "bearer", "signature",
    "authorization", "apikey", "privatekey", "connectionstring", "connstr", "key",
)  # fmt: skip
_SECRET_WORDS = frozenset({"sas", "sig", "pwd", "pass", "auth", "oauth", "jwt", "pat"})
# A URL's userinfo, to show it as ``***`` (which URLs carry credentials is url_credentials' rule).
_LEADING_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^@\s]*@")
# Tokens that hosts accept as the user of an https URL (GitHub, GitLab, Hugging Face).
_TOKEN_USER = re.compile(r"^(ghp_|gho_|ghu_|ghs_|ghr_|github_pat_|glpat-|hf_)|^[A-Za-z0-9_-]{32,}$")


def is_credential_name(name: str) -> bool:
    """Whether an option or query parameter called ``name`` carries a credential."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    compact = re.sub(r"[^a-z0-9]", "", words)
    return any(p in compact for p in _SECRET_PARTS) or bool(
        _SECRET_WORDS & set(re.split(r"[^a-z0-9]+", words))
    )


def masked_credentials(value: str) -> str | None:
    """``value`` with its credentials shown as ``***``, or None when it carries none: a password in a
    URL's userinfo, a token used as an https user, or a credential in its query (``sig=``, ``token=``)."""
    url = value.strip()
    try:
        parts = urlsplit(url)
        user = parts.username or ""
    except ValueError:  # e.g. an unclosed '[' of an IPv6 host: not a URL, checked as a path
        return None
    token_user = parts.scheme.lower() in ("http", "https") and bool(_TOKEN_USER.search(user))
    found = url_credentials(url) or (token_user and url_credentials(url, user_too=True))
    shown = _LEADING_USERINFO.sub(r"\1***@", url, count=1) if found else url
    if parts.scheme and parts.query:
        pieces = []
        for piece in urlsplit(shown).query.split("&"):
            name, eq, secret = piece.partition("=")
            if eq and secret and is_credential_name(unquote_plus(name)):
                found, piece = True, f"{name}=***"
            pieces.append(piece)
        shown = urlunsplit(urlsplit(shown)._replace(query="&".join(pieces)))
    return shown if found else None
