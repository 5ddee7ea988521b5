"""Master and client tokens.

The operator gives the service one secret, the **master token**, and shares it with the
interLink plugin. Holders of the master token call ``POST /v1/tokens`` to mint **client tokens**:
JSON Web Tokens (RFC 7519) signed with HMAC-SHA256 through PyJWT, carrying an expiry (``exp``), a
scope (``images:read``), an issuer, a subject (e.g. the pod) and a random id. Jobs present a client
token in ``X-Token``; it can read images and nothing else, and stops working when it expires.

The signing key is derived from the master token with HMAC-SHA256 (the HKDF-Expand step of
RFC 5869 with one block), so every replica given the same master token verifies every other
replica's tokens without sharing more state, and rotating the master token revokes all client
tokens at once. Comparing the master token uses :func:`hmac.compare_digest` (constant time).
"""

from __future__ import annotations

__all__ = ["READ_SCOPE", "Claims", "TokenAuthority"]

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass

import jwt

from flashlink.images.errors import ConfigError, TokenError

READ_SCOPE = "images:read"
_ALGORITHM = "HS256"
_ISSUER = "flashlink-images"
_KEY_INFO = b"flashlink-images client-token signing key v1\x01"
_MIN_MASTER_LENGTH = 16


@dataclass(frozen=True)
class Claims:
    """What a verified token grants."""

    subject: str
    scope: str
    expires_at: float | None  # None for the master token
    token_id: str | None = None

    @property
    def is_master(self) -> bool:
        return self.expires_at is None


class TokenAuthority:
    """Mints and verifies client tokens for one master token."""

    def __init__(self, master_token: str, *, max_ttl: float = 7 * 86400) -> None:
        if len(master_token) < _MIN_MASTER_LENGTH:
            raise ConfigError(
                f"master_token: {len(master_token)} characters is too short; give at least "
                f"{_MIN_MASTER_LENGTH} random characters (e.g. `openssl rand -hex 32`)"
            )
        if max_ttl <= 0:
            raise ConfigError(f"max_token_ttl: {max_ttl} must be positive (seconds)")
        self._master = master_token.encode()
        self._key = hmac.new(self._master, _KEY_INFO, hashlib.sha256).digest()
        self.max_ttl = max_ttl

    def is_master(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._master)

    def mint(self, *, ttl: float, subject: str = "client", scope: str = READ_SCOPE) -> str:
        """A client token valid for ``ttl`` seconds (at most ``max_ttl``)."""
        if not 0 < ttl <= self.max_ttl:
            raise TokenError(f"ttl_seconds: {ttl} is outside (0, {self.max_ttl:g}]")
        if scope != READ_SCOPE:
            raise TokenError(f"scope: {scope!r} is unknown; client tokens have {READ_SCOPE!r}")
        now = time.time()
        claims = {
            "iss": _ISSUER,
            "sub": subject,
            "scope": scope,
            "iat": int(now),
            # PyJWT compares int(exp): round up so a token never dies before its ttl
            "exp": math.ceil(now + ttl),
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)

    def verify(self, token: str | None, *, scope: str = READ_SCOPE) -> Claims:
        """The claims of a valid token allowed ``scope``; :class:`TokenError` says why not."""
        if not token:
            raise TokenError("missing token: send a client token in the X-Token header")
        if self.is_master(token):
            return Claims(subject="master", scope="*", expires_at=None)
        try:
            data = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],  # pinned: never trust the token's own "alg"
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "iss", "sub", "scope"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired: mint a new one with POST /v1/tokens") from None
        except jwt.InvalidSignatureError:
            raise TokenError(
                "token signature does not match: it was tampered with or minted by another "
                "master token"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"invalid token: {exc}") from None
        if data["scope"] != scope:
            raise TokenError(f"token scope {data['scope']!r} does not allow {scope!r}")
        return Claims(
            subject=str(data["sub"]),
            scope=str(data["scope"]),
            expires_at=float(data["exp"]),
            token_id=data.get("jti"),
        )
