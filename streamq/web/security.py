"""Who may look, and which posts to trust: the token, the session cookie, CSRF, headers.

The token is compared in constant time (:func:`hmac.compare_digest`); the browser keeps an
HMAC of it (not the token) in an HttpOnly, SameSite=Strict cookie. Every POST carries a CSRF
value that must equal the one in its own cookie (double submit: another site can neither
read the cookie nor, with SameSite=Strict, make the browser send it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SESSION_COOKIE = "streamq_session"
CSRF_COOKIE = "streamq_csrf"
CSRF_FIELD = "csrf"

# Scripts and styles from our own static files only; no frames, no form posts elsewhere.
HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def session_value(token: str) -> str:
    """What the session cookie holds for ``token``: a keyed hash, so the cookie is not the
    token itself (a leaked cookie does not reveal it)."""
    return hmac.new(token.encode(), b"streamq-dashboard-session", hashlib.sha256).hexdigest()


def same(given: str | None, expected: str) -> bool:
    """Constant-time equality; an absent or empty value never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def authorized(token: str | None, cookie: str | None, header: str | None) -> bool:
    """True when no token is set, or the request carries it (``Authorization: Bearer``) or
    the session cookie made from it."""
    if token is None:
        return True
    bearer = header[7:] if header and header[:7].lower() == "bearer " else None
    return same(bearer, token) or same(cookie, session_value(token))


def new_csrf() -> str:
    """A fresh CSRF value for a browser that has none."""
    return secrets.token_urlsafe(32)
