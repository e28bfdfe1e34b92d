"""Bearer-token verification, roles and the development key (integration.review.auth)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from integration.app.settings import AuthSettings
from integration.errors import AuthError, ForbiddenError
from integration.review.auth import (
    Permission,
    Principal,
    Role,
    TokenVerifier,
    authorize,
    bearer_token,
    load_or_create_dev_key,
    mint_dev_token,
    roles_from_claims,
)


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "https://idp.example.org/realms/hospital",
        "aud": "radgpt",
        "sub": "dr-house",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "realm_access": {"roles": ["radiologist", "offline_access"]},
        "given_name": "Gregory",
        "family_name": "House",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _verifier(**kwargs: Any) -> TokenVerifier:
    defaults: dict[str, Any] = {
        "issuer": "https://idp.example.org/realms/hospital",
        "audience": "radgpt",
        "role_claim": "realm_access.roles",
    }
    defaults.update(kwargs)
    return TokenVerifier(**defaults)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return _rsa_key()


async def test_pem_key_accepts_valid_rs256_token(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = _verifier(public_keys=[_public_pem(rsa_key)])
    token = jwt.encode(_claims(), rsa_key, algorithm="RS256")
    principal = await verifier.verify(token)
    assert principal.subject == "dr-house"
    assert principal.roles == {Role.RADIOLOGIST}
    assert principal.display_name == "Gregory House"
    assert principal.permissions == {Permission.REVIEW}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
        ({"iss": "https://evil.example.org"}, "issuer"),
        ({"aud": "another-app"}, "audience"),
        ({"exp": None}, "'exp'"),
        ({"sub": None}, "'sub'"),
    ],
)
async def test_rejects_bad_claims(
    rsa_key: rsa.RSAPrivateKey, overrides: dict[str, Any], message: str
) -> None:
    verifier = _verifier(public_keys=[_public_pem(rsa_key)])
    token = jwt.encode(_claims(**overrides), rsa_key, algorithm="RS256")
    with pytest.raises(AuthError, match=message):
        await verifier.verify(token)


async def test_rejects_foreign_signature(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = _verifier(public_keys=[_public_pem(rsa_key)])
    token = jwt.encode(_claims(), _rsa_key(), algorithm="RS256")
    with pytest.raises(AuthError, match="signature"):
        await verifier.verify(token)


async def test_rejects_symmetric_and_none_algorithms(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = _verifier(public_keys=[_public_pem(rsa_key)])
    # The classic confusion attack: HMAC keyed with the public key's PEM text.
    hs = jwt.encode(_claims(), "x" * 32, algorithm="HS256")
    unsigned = jwt.encode(_claims(), None, algorithm="none")
    for token in (hs, unsigned, "not-a-jwt"):
        with pytest.raises(AuthError):
            await verifier.verify(token)
    with pytest.raises(ValueError, match="asymmetric"):
        _verifier(public_keys=[_public_pem(rsa_key)], algorithms=["HS256"])


def test_verifier_needs_a_key() -> None:
    with pytest.raises(ValueError, match="no token signing keys"):
        _verifier()


def test_roles_from_claims_shapes() -> None:
    assert roles_from_claims({"roles": ["admin", "x"]}) == {Role.ADMIN}
    assert roles_from_claims({"roles": "compliance radiologist"}) == {
        Role.COMPLIANCE,
        Role.RADIOLOGIST,
    }
    nested = {"resource_access": {"radgpt": {"roles": ["radiologist"]}}}
    assert roles_from_claims(nested, "resource_access.radgpt.roles") == {Role.RADIOLOGIST}
    assert roles_from_claims({"https://example.org/roles": ["admin"]}, "https://example.org/roles")
    assert roles_from_claims({"roles": 7}) == frozenset()
    assert roles_from_claims({}, "a.b.c") == frozenset()


def test_authorize_matrix() -> None:
    def who(*roles: Role) -> Principal:
        return Principal(subject="u", roles=frozenset(roles), issuer="i")

    authorize(who(Role.RADIOLOGIST), Permission.REVIEW)
    authorize(who(Role.COMPLIANCE), Permission.AUDIT)
    authorize(who(Role.ADMIN), Permission.REVIEW)
    authorize(who(Role.ADMIN), Permission.AUDIT)
    with pytest.raises(ForbiddenError):
        authorize(who(Role.RADIOLOGIST), Permission.AUDIT)
    with pytest.raises(ForbiddenError):
        authorize(who(Role.COMPLIANCE), Permission.REVIEW)
    with pytest.raises(ForbiddenError):
        authorize(who(), Permission.REVIEW)
    assert who(Role.ADMIN, Role.COMPLIANCE).primary_role == "admin"


def test_bearer_token_header_parsing() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer   tok ") == "tok"
    for bad in (None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer   "):
        with pytest.raises(AuthError):
            bearer_token(bad)


async def test_dev_token_round_trip(tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "dev-key.pem"
    token = mint_dev_token("compliance", "officer-1", key_path=key_path, ttl_s=60)
    assert key_path.exists()
    assert key_path.stat().st_mode & 0o777 == 0o600
    settings = AuthSettings(trust_dev_key=True, dev_key_path=key_path)
    principal = await TokenVerifier.from_settings(settings).verify(token)
    assert principal.subject == "officer-1"
    assert principal.roles == {Role.COMPLIANCE}
    assert jwt.get_unverified_header(token)["alg"] == "ES256"


async def test_dev_key_is_reused_and_untrusted_by_default(tmp_path: Path) -> None:
    key_path = tmp_path / "dev-key.pem"
    first = load_or_create_dev_key(key_path)
    second = load_or_create_dev_key(key_path)
    assert first.private_numbers() == second.private_numbers()
    token = mint_dev_token("admin", "root", key_path=key_path)
    # Without trust_dev_key the dev key is not loaded at all.
    with pytest.raises(ValueError, match="no token signing keys"):
        TokenVerifier.from_settings(AuthSettings(dev_key_path=key_path))
    # A verifier that trusts only another key refuses the dev token.
    other = _public_pem(ec.generate_private_key(ec.SECP256R1()))
    verifier = TokenVerifier(issuer="radgpt-dev", audience="radgpt", public_keys=[other])
    with pytest.raises(AuthError):
        await verifier.verify(token)


async def test_dev_token_nested_role_claim_and_expiry(tmp_path: Path) -> None:
    key_path = tmp_path / "dev-key.pem"
    token = mint_dev_token(
        "radiologist",
        "dr-who",
        key_path=key_path,
        role_claim="realm_access.roles",
        ttl_s=10,
        now=time.time() - 3600,
    )
    assert jwt.decode(token, options={"verify_signature": False})["realm_access"] == {
        "roles": ["radiologist"]
    }
    verifier = TokenVerifier(
        issuer="radgpt-dev",
        audience="radgpt",
        role_claim="realm_access.roles",
        dev_key_path=key_path,
    )
    with pytest.raises(AuthError, match="expired"):
        await verifier.verify(token)


def test_mint_dev_token_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown role"):
        mint_dev_token("surgeon", "x", key_path=tmp_path / "k.pem")
    with pytest.raises(ValueError, match="subject"):
        mint_dev_token("admin", " ", key_path=tmp_path / "k.pem")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ValueError, match="not a PEM"):
        mint_dev_token("admin", "x", key_path=tmp_path / "junk.pem")


# --- JWKS: a real HTTP server -----------------------------------------------------------------


class _Jwks:
    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, _Jwks]]:
    state = _Jwks()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            body = json.dumps({"keys": state.keys}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/certs", state
    finally:
        server.shutdown()
        server.server_close()


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, use="sig", alg="RS256")
    return jwk


async def test_jwks_fetch_cache_and_refresh_on_unknown_kid(
    jwks_server: tuple[str, _Jwks],
) -> None:
    url, state = jwks_server
    old, new = _rsa_key(), _rsa_key()
    state.keys = [_jwk(old, "k1")]
    verifier = _verifier(jwks_url=url, jwks_min_refresh_s=0.0)

    token1 = jwt.encode(_claims(), old, algorithm="RS256", headers={"kid": "k1"})
    assert (await verifier.verify(token1)).subject == "dr-house"
    assert (await verifier.verify(token1)).subject == "dr-house"
    assert state.requests == 1  # cached

    # The identity provider rotates its key: an unknown kid triggers one refresh.
    state.keys = [_jwk(old, "k1"), _jwk(new, "k2")]
    token2 = jwt.encode(_claims(sub="dr-b"), new, algorithm="RS256", headers={"kid": "k2"})
    assert (await verifier.verify(token2)).subject == "dr-b"
    assert state.requests == 2

    # A kid that is nowhere is refused (after a refresh attempt).
    stray = jwt.encode(_claims(), _rsa_key(), algorithm="RS256", headers={"kid": "k9"})
    with pytest.raises(AuthError, match="unknown key"):
        await verifier.verify(stray)


async def test_jwks_refresh_is_rate_limited(jwks_server: tuple[str, _Jwks]) -> None:
    url, state = jwks_server
    key = _rsa_key()
    state.keys = [_jwk(key, "k1")]
    verifier = _verifier(jwks_url=url, jwks_min_refresh_s=60.0)
    await verifier.verify(jwt.encode(_claims(), key, algorithm="RS256", headers={"kid": "k1"}))
    for i in range(5):  # random kids must not hammer the identity provider
        token = jwt.encode(_claims(), key, algorithm="RS256", headers={"kid": f"x{i}"})
        with pytest.raises(AuthError):
            await verifier.verify(token)
    assert state.requests == 1


async def test_jwks_unreachable_is_auth_error() -> None:
    verifier = _verifier(jwks_url="http://127.0.0.1:9/certs")
    token = jwt.encode(_claims(), _rsa_key(), algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(AuthError, match="JWKS"):
        await verifier.verify(token)
