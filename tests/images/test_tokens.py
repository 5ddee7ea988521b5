"""Client tokens: minted from the master token, expiring, read-scoped, tamper-evident."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from flashlink.images.errors import ConfigError, TokenError
from flashlink.images.tokens import READ_SCOPE, TokenAuthority

MASTER = "m" * 32


def test_a_minted_token_verifies_with_its_claims() -> None:
    authority = TokenAuthority(MASTER)
    before = time.time()
    claims = authority.verify(authority.mint(ttl=60, subject="pod/ns/job-1"))
    assert claims.subject == "pod/ns/job-1"
    assert claims.scope == READ_SCOPE
    assert claims.expires_at is not None
    assert before + 59 < claims.expires_at < time.time() + 61
    assert not claims.is_master
    # another replica with the same master token accepts it
    assert TokenAuthority(MASTER).verify(authority.mint(ttl=60)).scope == READ_SCOPE


def test_the_master_token_is_accepted_and_unknown_ones_are_not() -> None:
    authority = TokenAuthority(MASTER)
    assert authority.verify(MASTER).is_master
    with pytest.raises(TokenError, match="missing token"):
        authority.verify(None)
    with pytest.raises(TokenError, match="invalid token"):
        authority.verify("not-a-jwt")
    other = TokenAuthority("o" * 32).mint(ttl=60)
    with pytest.raises(TokenError, match="minted by another master token"):
        authority.verify(other)


def test_expired_tokens_are_refused() -> None:
    authority = TokenAuthority(MASTER)
    token = authority.mint(ttl=0.3)
    expires_at = authority.verify(token).expires_at
    assert expires_at is not None
    time.sleep(max(0.0, expires_at - time.time()) + 0.05)
    with pytest.raises(TokenError, match="expired"):
        authority.verify(token)


def _resign_payload(token: str, **changes: object) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    raw = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{header}.{raw}.{signature}"


def test_tampered_tokens_are_refused() -> None:
    authority = TokenAuthority(MASTER)
    token = authority.mint(ttl=60)
    with pytest.raises(TokenError, match="tampered"):
        authority.verify(_resign_payload(token, exp=time.time() + 10**6))
    with pytest.raises(TokenError, match="tampered"):
        authority.verify(_resign_payload(token, scope="images:admin"))
    # "alg": "none" tokens are never accepted
    unsigned = jwt.encode({"sub": "x", "scope": READ_SCOPE, "exp": time.time() + 60}, None, "none")
    with pytest.raises(TokenError, match="invalid token"):
        authority.verify(unsigned)


def test_scope_and_ttl_limits() -> None:
    authority = TokenAuthority(MASTER, max_ttl=3600)
    with pytest.raises(TokenError, match=r"ttl_seconds: 7200 is outside \(0, 3600\]"):
        authority.mint(ttl=7200)
    with pytest.raises(TokenError, match="scope"):
        authority.mint(ttl=60, scope="images:write")
    with pytest.raises(TokenError, match="does not allow 'images:write'"):
        authority.verify(authority.mint(ttl=60), scope="images:write")


def test_short_master_tokens_are_refused() -> None:
    with pytest.raises(ConfigError, match="master_token: 5 characters is too short"):
        TokenAuthority("short")
