"""Authentication: ``Authorization: Bearer <JWT>`` → :class:`Principal`.

Signature, ``exp``/``nbf`` (small leeway), ``iss`` and ``aud`` are checked by PyJWT; the
algorithm list is fixed per mode (``none`` is never accepted; HS256 only in development, with the
state directory's development key). Every failure is the same ``UNAUTHENTICATED``: the message
helps no attacker, the log line (without the token) helps the operator. Keys from a JWKS URL are
fetched asynchronously with a short deadline (:mod:`gateway.admission.jwks`); when they cannot be
fetched the token is refused (fail closed), and the event loop never waits on the fetch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from gateway.admission.jwks import JwksKeys, JwksUnavailable
from gateway.errors import Code, GatewayError
from gateway.identifiers import is_identifier
from gateway.keyfile import load_or_create

log = logging.getLogger("ketenpoort.auth")

DEV_KEY_FILE = "dev-token.key"
ASYMMETRIC_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
LEEWAY_SECONDS = 30
#: Seconds one fetch of a JWKS URL may take (``KETENPOORT_JWKS_TIMEOUT``'s default).
JWKS_TIMEOUT_S = 2.0
#: The claim that lets an application token name the officer it acts for (``X-Gebruiker``).
ACT_FOR_OFFICERS = "ketenpoort:act_for_officers"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: an officer of an organisation, with roles and granted purposes."""

    subject: str
    oin: str
    organisation: str
    roles: tuple[str, ...]
    purposes: frozenset[str]
    #: An application token allowed to assert the officer it acts for (``X-Gebruiker``).
    acts_for_officers: bool = False


def unauthenticated() -> GatewayError:
    return GatewayError(Code.UNAUTHENTICATED, "Authentication required.")


def load_or_create_dev_key(state_dir: Path) -> bytes:
    """The development signing key (HS256), shared by ``serve`` and ``token`` via the state dir."""
    return load_or_create(state_dir / DEV_KEY_FILE)


class Authenticator:
    """Verifies bearer tokens. Construct once at start; ``authenticate`` is cheap: a token seen
    before is answered from memory, and only a JWKS URL's key set is ever fetched (rarely,
    asynchronously, see :class:`~gateway.admission.jwks.JwksKeys`)."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        dev_key: bytes | None = None,
        jwks: jwt.PyJWKSet | None = None,
        jwks_keys: JwksKeys | None = None,
    ) -> None:
        if dev_key is None and jwks is None and jwks_keys is None:
            raise ValueError("an Authenticator needs a development key or a JWKS")
        self._issuer = issuer
        self._audience = audience
        self._dev_key = dev_key
        self._jwks = jwks
        self._jwks_keys = jwks_keys
        # Verified tokens are cached until shortly before they expire: a client sends the same
        # token on every request, and signature checks are the costliest step of a request.
        self._verified: dict[str, tuple[float, Principal]] = {}

    def with_dev_key(self, dev_key: bytes) -> Authenticator:
        """This authenticator's JWKS plus the development key (development mode with a JWKS)."""
        return Authenticator(
            issuer=self._issuer,
            audience=self._audience,
            dev_key=dev_key,
            jwks=self._jwks,
            jwks_keys=self._jwks_keys,
        )

    @classmethod
    def from_jwks_source(
        cls, source: str, *, issuer: str, audience: str, timeout: float = JWKS_TIMEOUT_S
    ) -> Authenticator:
        """A JWKS file path or an http(s) URL (fetched with ``timeout`` seconds per fetch)."""
        if source.startswith(("https://", "http://")):
            return cls(
                issuer=issuer,
                audience=audience,
                jwks_keys=JwksKeys(source, timeout=timeout),
            )
        data = json.loads(Path(source).read_text(encoding="utf-8"))
        return cls(issuer=issuer, audience=audience, jwks=jwt.PyJWKSet.from_dict(data))

    async def _key_for(self, header: dict[str, Any]) -> tuple[Any, Sequence[str]]:
        alg = header.get("alg")
        if alg == "HS256" and self._dev_key is not None:
            return self._dev_key, ("HS256",)
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise unauthenticated()
        if self._jwks_keys is not None:
            return await self._jwks_keys.key(header.get("kid")), (alg,)
        if self._jwks is not None:
            kid = header.get("kid")
            for key in self._jwks.keys:
                if kid is None or key.key_id == kid:
                    return key.key, (alg,)
        raise unauthenticated()

    async def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header value, or ``UNAUTHENTICATED`` (also when
        the JWKS URL cannot be fetched now: no key, no admission)."""
        if not authorization:
            raise unauthenticated()
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise unauthenticated()
        token = token.strip()
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            header = jwt.get_unverified_header(token)
            key, algorithms = await self._key_for(header)
            claims = jwt.decode(
                token,
                key,
                algorithms=list(algorithms),
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
            principal = _principal(claims)
        except GatewayError:
            raise
        except JwksUnavailable:  # logged by the key source, once per failed fetch
            raise unauthenticated() from None
        except Exception as exc:  # any verification failure looks the same to the caller
            log.info("token refused: %s", type(exc).__name__)
            raise unauthenticated() from None
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[token] = (min(float(claims["exp"]), now + 300), principal)
        return principal


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise unauthenticated()


def _principal(claims: dict[str, Any]) -> Principal:
    sub, oin, org = claims.get("sub"), claims.get("oin"), claims.get("org")
    # The subject is recorded as who authenticated and keys the quotas: the same identifier
    # rules as an officer named in X-Gebruiker.
    if not is_identifier(sub, "officer") or not is_identifier(oin, "oin"):
        raise unauthenticated()
    if not is_identifier(org, "policy_id"):
        raise unauthenticated()
    acting = claims.get(ACT_FOR_OFFICERS, False)
    if not isinstance(acting, bool):
        raise unauthenticated()
    return Principal(
        subject=sub,
        oin=oin,
        organisation=org,
        roles=_strings(claims.get("roles", ())),
        purposes=frozenset(_strings(claims.get("doelbindingen", ()))),
        acts_for_officers=acting,
    )


def mint_dev_token(
    key: bytes,
    *,
    issuer: str,
    audience: str,
    subject: str,
    oin: str,
    organisation: str,
    roles: Sequence[str],
    purposes: Sequence[str],
    ttl: int = 3600,
    act_for_officers: bool = False,
) -> str:
    """A development token (HS256). Only ever signed with the development key.

    ``act_for_officers``: an application token that may name the officer it acts for.
    """
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "oin": oin,
        "org": organisation,
        "roles": list(roles),
        "doelbindingen": list(purposes),
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
    }
    if act_for_officers:
        claims[ACT_FOR_OFFICERS] = True
    return jwt.encode(claims, key, algorithm="HS256")
