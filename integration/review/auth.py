"""Access control: OAuth2/OIDC bearer JWTs, roles and the local development key.

The service never issues production tokens: a hospital identity provider (Keycloak, Entra ID,
Okta, ...) signs them with RS256 or ES256, and :class:`TokenVerifier` checks the signature
against configured PEM public keys or the provider's JWKS (fetched with httpx, cached, and
refreshed when a token names an unknown ``kid``), then issuer, audience, ``exp`` and ``nbf``.
Roles come from a configurable claim (``roles``, or a dotted path such as
``realm_access.roles``):

=============== ===================================================
role            may
=============== ===================================================
``radiologist`` list, view, approve, edit and reject drafts
``compliance``  query, export and verify the audit log
``admin``       everything
=============== ===================================================

For the demo and the tests, :func:`mint_dev_token` signs tokens with a local development key
(generated once, ES256).  The verifier trusts that key only when told to
(``auth.trust_dev_key=true``, which settings allow only with ``environment=local``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from integration.app.settings import AuthSettings
from integration.errors import AuthError, ForbiddenError

__all__ = [
    "DEFAULT_DEV_KEY_PATH",
    "Permission",
    "Principal",
    "Role",
    "TokenVerifier",
    "authorize",
    "bearer_token",
    "load_or_create_dev_key",
    "mint_dev_token",
    "roles_from_claims",
]

DEFAULT_DEV_KEY_PATH = Path(".radgpt") / "dev-key.pem"
log = logging.getLogger(__name__)
_ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"})


class Role(StrEnum):
    RADIOLOGIST = "radiologist"
    COMPLIANCE = "compliance"
    ADMIN = "admin"


class Permission(StrEnum):
    REVIEW = "review"  # list/view/approve/reject drafts
    AUDIT = "audit"  # query/export/verify the audit log


_GRANTS: Mapping[Role, frozenset[Permission]] = {
    Role.RADIOLOGIST: frozenset({Permission.REVIEW}),
    Role.COMPLIANCE: frozenset({Permission.AUDIT}),
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    subject: str
    roles: frozenset[Role]
    issuer: str
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    token_id: str | None = None
    expires_at: float | None = None

    @property
    def permissions(self) -> frozenset[Permission]:
        granted: set[Permission] = set()
        for role in self.roles:
            granted |= _GRANTS[role]
        return frozenset(granted)

    @property
    def primary_role(self) -> str:
        """The role recorded in the audit log (the most powerful one held)."""
        for role in (Role.ADMIN, Role.RADIOLOGIST, Role.COMPLIANCE):
            if role in self.roles:
                return role.value
        return "none"

    @property
    def display_name(self) -> str:
        return (
            self.name
            or " ".join(p for p in (self.given_name, self.family_name) if p)
            or (self.subject)
        )


def authorize(principal: Principal, permission: Permission) -> None:
    """Raise :class:`ForbiddenError` unless one of the principal's roles grants ``permission``."""
    if permission not in principal.permissions:
        held = ", ".join(sorted(role.value for role in principal.roles)) or "none"
        raise ForbiddenError(f"role(s) [{held}] lack '{permission}'")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        raise AuthError("missing bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("authorization header is not a bearer token")
    return token.strip()


def _claim_at(claims: Mapping[str, Any], path: str) -> Any:
    if path in claims:  # a claim name that itself contains dots (e.g. a URL claim)
        return claims[path]
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def roles_from_claims(claims: Mapping[str, Any], role_claim: str = "roles") -> frozenset[Role]:
    """The known roles named by ``role_claim`` (a list, or a space-separated string).

    Unknown role names are ignored, so an identity provider can send other application roles.
    """
    value = _claim_at(claims, role_claim)
    names: Iterable[Any]
    if isinstance(value, str):
        names = value.split()
    elif isinstance(value, list | tuple):
        names = value
    else:
        return frozenset()
    known = {r.value for r in Role}
    return frozenset(Role(n) for n in names if isinstance(n, str) and n in known)


# --- the development key ------------------------------------------------------------------


def load_or_create_dev_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load the ES256 development key, creating it (mode 0600) the first time.

    Creation is atomic (``O_EXCL`` on a temporary name, then a rename that does not replace an
    existing key), so concurrent first uses agree on one key.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process created the key first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise ValueError(f"{path} is not a PEM private key") from exc
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC (ES256) private key")
    return loaded


def _key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.sha256(der).digest()[:12]
    return "radgpt-dev-" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _nest(path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {head: _nest(rest, value) if rest else value}


def mint_dev_token(
    role: str,
    sub: str,
    *,
    key_path: Path,
    ttl_s: int = 8 * 3600,
    issuer: str = "radgpt-dev",
    audience: str = "radgpt",
    role_claim: str = "roles",
    name: str | None = None,
    now: float | None = None,
) -> str:
    """A development JWT (ES256) for ``sub`` holding ``role``; never for production use."""
    try:
        checked = Role(role)
    except ValueError as exc:
        raise ValueError(f"unknown role {role!r}; use one of {[r.value for r in Role]}") from exc
    if not sub.strip():
        raise ValueError("the subject (--sub) must not be empty")
    if ttl_s <= 0:
        raise ValueError("ttl must be positive")
    key = load_or_create_dev_key(key_path)
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": sub,
        "name": name or sub,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    claims.update(_nest(role_claim, [checked.value]))
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": _key_id(key.public_key())})


# --- verification -------------------------------------------------------------------------


@dataclass
class _JwksCache:
    url: str
    client: httpx.AsyncClient | None
    ttl_s: float
    min_refresh_s: float
    clock: Callable[[], float]
    keys: dict[str, Any] = field(default_factory=dict)
    fetched_at: float | None = None
    attempted_at: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get(self, kid: str | None) -> list[Any]:
        now = self.clock()
        stale = self.fetched_at is None or now - self.fetched_at > self.ttl_s
        unknown = kid is not None and kid not in self.keys
        if stale or unknown:
            async with self.lock:  # one fetch at a time; at most one per min_refresh_s
                last = self.attempted_at
                if last is None or self.clock() - last >= self.min_refresh_s:
                    self.attempted_at = self.clock()
                    try:
                        await self._fetch()
                    except AuthError:
                        if not self.keys:  # keep serving the last good key set
                            raise
                        log.warning("JWKS refresh failed; using the cached key set")
        if kid is not None:
            return [self.keys[kid]] if kid in self.keys else []
        return list(self.keys.values())

    async def _fetch(self) -> None:
        try:
            if self.client is not None:
                response = await self.client.get(self.url, timeout=10.0)
            else:
                async with httpx.AsyncClient() as client:
                    response = await client.get(self.url, timeout=10.0)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise AuthError("signing keys (JWKS) are unavailable") from exc
        try:
            keyset = jwt.PyJWKSet.from_dict(document)
        except jwt.PyJWTError as exc:
            raise AuthError("the JWKS document holds no usable keys") from exc
        self.keys = {k.key_id: k.key for k in keyset.keys if k.key_id}
        self.fetched_at = self.clock()


class TokenVerifier:
    """Verify bearer JWTs and turn them into a :class:`Principal`.

    Keys: PEM public keys (tried in turn when a token has no ``kid``), a JWKS URL, and, only
    when ``dev_key_path`` is given, the development key.  Symmetric and ``none`` algorithms are
    never accepted.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str] = ("RS256", "ES256"),
        role_claim: str = "roles",
        public_keys: Sequence[str] = (),
        jwks_url: str | None = None,
        dev_key_path: Path | None = None,
        http_client: httpx.AsyncClient | None = None,
        jwks_ttl_s: float = 600.0,
        jwks_min_refresh_s: float = 10.0,
        leeway_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        unsafe = [a for a in algorithms if a not in _ASYMMETRIC]
        if unsafe:
            raise ValueError(f"only asymmetric JWT algorithms are allowed, not {unsafe}")
        if not (public_keys or jwks_url or dev_key_path):
            raise ValueError("no token signing keys configured (auth.public_keys / auth.jwks_url)")
        self.issuer = issuer
        self.audience = audience
        self.algorithms = list(algorithms)
        self.role_claim = role_claim
        self.leeway_s = leeway_s
        self._clock = clock
        self._pem_keys: list[Any] = []
        for pem in public_keys:
            try:
                self._pem_keys.append(serialization.load_pem_public_key(pem.encode()))
            except ValueError as exc:
                raise ValueError("auth.public_keys holds a value that is not a PEM key") from exc
        self._kid_keys: dict[str, Any] = {}
        if dev_key_path is not None:
            dev_public = load_or_create_dev_key(dev_key_path).public_key()
            self._kid_keys[_key_id(dev_public)] = dev_public
            if "ES256" not in self.algorithms:
                self.algorithms.append("ES256")
        self._jwks = (
            _JwksCache(jwks_url, http_client, jwks_ttl_s, jwks_min_refresh_s, clock)
            if jwks_url
            else None
        )

    @classmethod
    def from_settings(
        cls,
        auth: AuthSettings,
        *,
        http_client: httpx.AsyncClient | None = None,
        default_dev_key_path: Path = DEFAULT_DEV_KEY_PATH,
    ) -> TokenVerifier:
        dev_key = (auth.dev_key_path or default_dev_key_path) if auth.trust_dev_key else None
        return cls(
            issuer=auth.issuer,
            audience=auth.audience,
            algorithms=auth.algorithms,
            role_claim=auth.role_claim,
            public_keys=auth.public_keys,
            jwks_url=auth.jwks_url,
            dev_key_path=dev_key,
            http_client=http_client,
        )

    async def _candidate_keys(self, kid: str | None) -> list[Any]:
        if kid is not None and kid in self._kid_keys:
            return [self._kid_keys[kid]]
        keys: list[Any] = []
        if self._jwks is not None:
            keys.extend(await self._jwks.get(kid))
        if kid is None or not keys:
            keys.extend(self._pem_keys)
        return keys

    async def verify(self, token: str) -> Principal:
        """Check signature, issuer, audience, ``exp`` and ``nbf``; raise :class:`AuthError`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("malformed token") from exc
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AuthError(f"token algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        keys = await self._candidate_keys(kid if isinstance(kid, str) else None)
        if not keys:
            raise AuthError("token signed by an unknown key")
        claims: dict[str, Any] | None = None
        last: jwt.PyJWTError | None = None
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=self.algorithms,
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway_s,
                    options={"require": ["exp", "sub", "iss", "aud"]},
                )
                break
            except jwt.InvalidSignatureError as exc:
                last = exc
                continue
            except jwt.ExpiredSignatureError as exc:
                raise AuthError("token expired") from exc
            except jwt.ImmatureSignatureError as exc:
                raise AuthError("token not yet valid") from exc
            except jwt.InvalidAudienceError as exc:
                raise AuthError("token audience is not accepted") from exc
            except jwt.InvalidIssuerError as exc:
                raise AuthError("token issuer is not accepted") from exc
            except jwt.MissingRequiredClaimError as exc:
                raise AuthError(f"token lacks the '{exc.claim}' claim") from exc
            except jwt.PyJWTError as exc:
                raise AuthError("invalid token") from exc
        if claims is None:
            raise AuthError("bad token signature") from last
        return Principal(
            subject=str(claims["sub"]),
            roles=roles_from_claims(claims, self.role_claim),
            issuer=str(claims["iss"]),
            name=_str_or_none(claims.get("name") or claims.get("preferred_username")),
            given_name=_str_or_none(claims.get("given_name")),
            family_name=_str_or_none(claims.get("family_name")),
            token_id=_str_or_none(claims.get("jti")),
            expires_at=float(claims["exp"]),
        )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
