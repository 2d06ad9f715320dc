"""The simulator's OIDC authority: discovery, device code flow, token and refresh grants, expiry.

Main type: `Authority` (thread-safe, in memory). Discovery answers like login.microsoftonline.com:
tenant discovery (`/{tenant}/v2.0/.well-known/openid-configuration`) and instance discovery
(`/common/discovery/instance`, with `tenant_discovery_endpoint` and the cloud `metadata`), both with
`Cache-Control: max-age=86400, private` as the real service sends. Tokens are RS256 JWTs signed with
a key kept in the data dir; refresh tokens are opaque and rotate on use; revoking them forces a new
sign-in. Responses carry `id_token` and `client_info` so msal keeps the account.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DISCOVERY_CACHE_CONTROL = "max-age=86400, private"  # what login.microsoftonline.com sends on both

# The clouds login.microsoftonline.com lists in instance discovery's "metadata" (recorded answers of
# the real endpoint, api-version 1.1; docs/graph-notes.md section 7 names the source).
CLOUDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("login.microsoftonline.com", "login.windows.net",
     ("login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net")),
    ("login.partner.microsoftonline.cn", "login.partner.microsoftonline.cn",
     ("login.partner.microsoftonline.cn", "login.chinacloudapi.cn")),
    ("login.microsoftonline.de", "login.microsoftonline.de", ("login.microsoftonline.de",)),
    ("login.microsoftonline.us", "login.microsoftonline.us",
     ("login.microsoftonline.us", "login.usgovcloudapi.net")),
    ("login-us.microsoftonline.com", "login-us.microsoftonline.com", ("login-us.microsoftonline.com",)),
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenInvalid(Exception):
    """A bearer token was missing, malformed, badly signed or expired (message says which)."""


@dataclass
class DeviceFlow:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    approved: bool = False
    redeemed: bool = False


@dataclass
class Grant:
    client_id: str
    scope: str
    expires_at: float
    nonce: str | None = None
    challenge: str | None = None


@dataclass
class User:
    oid: str
    tid: str
    name: str
    upn: str


@dataclass
class Authority:
    """Issues and checks tokens for one tenant with one user."""

    data_dir: Path
    base_url: str
    user: User
    auto_approve: bool = True
    token_lifetime: float = 3600.0
    refresh_lifetime: float = 90 * 86400.0
    device_code_lifetime: float = 900.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _flows: dict[str, DeviceFlow] = field(default_factory=dict)
    _refresh: dict[str, Grant] = field(default_factory=dict)
    _key: rsa.RSAPrivateKey | None = None
    _not_before: float = 0.0
    _auth_codes: dict[str, Grant] = field(default_factory=dict)
    # seconds since the epoch: every issue, expiry and revocation reads it (tests move it, never sleep)
    clock: Callable[[], float] = time.time

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/{self.user.tid}/v2.0"

    @property
    def kid(self) -> str:
        return "sim-" + _b64url(self._public_der()[-12:])

    # --- keys -------------------------------------------------------------------------------------
    def _signing_key(self) -> rsa.RSAPrivateKey:
        if self._key is None:
            path = self.data_dir / "signing-key.pem"
            if path.exists():
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
                if not isinstance(key, rsa.RSAPrivateKey):
                    raise ValueError(f"{path} is not an RSA key; delete it to make a new one")
                self._key = key
            else:
                self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                pem = self._key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch(mode=0o600)
                path.write_bytes(pem)
        return self._key

    def _public_der(self) -> bytes:
        return (
            self._signing_key()
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def jwks(self) -> dict[str, Any]:
        nums = self._signing_key().public_key().public_numbers()

        def enc(n: int) -> str:
            return _b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))

        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": self.kid,
                    "n": enc(nums.n),
                    "e": enc(nums.e),
                    "issuer": self.issuer,
                }
            ]
        }

    # --- discovery --------------------------------------------------------------------------------
    def discovery(self, tenant: str) -> dict[str, Any]:
        base = f"{self.base_url}/{tenant}"
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT],
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "name",
                "oid",
                "tid",
                "preferred_username",
                "nonce",
            ],
            "tenant_region_scope": "EU",
            "cloud_instance_name": (urlsplit(self.base_url).hostname or "").removeprefix("login."),
        }

    def instance_discovery(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """`GET /common/discovery/instance?api-version=...&authorization_endpoint=...` as Entra ID answers
        it: the tenant discovery endpoint for that authorization endpoint and the known clouds' aliases,
        or 400 `invalid_instance` for a host it does not know."""
        parts = urlsplit(query.get("authorization_endpoint", ""))
        own = urlsplit(self.base_url).hostname or ""
        groups = [{"preferred_network": net, "preferred_cache": cache, "aliases": list(aliases)}
                  for net, cache, aliases in CLOUDS]
        if not any(own in g["aliases"] for g in groups):  # a simulator on 127.0.0.1 is its own cloud
            groups.insert(0, {"preferred_network": own, "preferred_cache": own, "aliases": [own]})
        known = any(parts.hostname in g["aliases"] for g in groups)
        segs = [s for s in parts.path.split("/") if s]
        if parts.scheme != "https" or not known or not segs:
            return 400, _oauth_error(
                "invalid_instance",
                "AADSTS50049: Unknown or invalid instance.",
            )
        return 200, {
            "tenant_discovery_endpoint": f"{self.base_url}/{segs[0]}/v2.0/.well-known/openid-configuration",
            "api-version": query.get("api-version", "1.1"),
            "metadata": groups,
        }

    # --- device code flow ----------------------------------------------------------------------------
    def start_device_flow(self, client_id: str, scope: str) -> dict[str, Any]:
        if not client_id:
            return _oauth_error("invalid_request", "AADSTS900144: The request body must contain 'client_id'.")
        flow = DeviceFlow(
            device_code=secrets.token_urlsafe(32),
            user_code="".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9)),
            client_id=client_id,
            scope=scope,
            expires_at=self.clock() + self.device_code_lifetime,
            approved=self.auto_approve,
        )
        with self._lock:
            self._flows[flow.device_code] = flow
        verify = f"{self.base_url}/devicelogin"
        return {
            "device_code": flow.device_code,
            "user_code": flow.user_code,
            "verification_uri": verify,
            "expires_in": int(self.device_code_lifetime),
            "interval": 1,
            "message": f"To sign in, use a web browser to open the page {verify} and enter the code "
            f"{flow.user_code} to authenticate (or approve it through the simulator's admin API).",
        }

    def approve(self, user_code: str | None = None) -> int:
        """Approve pending device flows (one by user code, or all); returns how many were approved."""
        n = 0
        with self._lock:
            for flow in self._flows.values():
                if not flow.approved and (user_code is None or flow.user_code == user_code):
                    flow.approved = True
                    n += 1
        return n

    def pending_user_codes(self) -> list[str]:
        with self._lock:
            return [f.user_code for f in self._flows.values() if not f.approved and not f.redeemed]

    # --- auth code flow (for completeness: approved at once) ----------------------------------------
    def authorize(
        self, client_id: str, scope: str, nonce: str | None = None, challenge: str | None = None
    ) -> str:
        """Approve an authorization-code request at once (no login page) and return the code.

        PKCE: `challenge` is the S256 code_challenge; the token request must bring its verifier."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._auth_codes[code] = Grant(client_id, scope, self.clock() + 600, nonce, challenge)
        return code

    # --- token endpoint -------------------------------------------------------------------------------
    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant_type = form.get("grant_type", "")
        nonce: str | None = None
        client_id = form.get("client_id", "")
        now = self.clock()
        with self._lock:
            if grant_type == DEVICE_GRANT:
                flow = self._flows.get(form.get("device_code", ""))
                if flow is None or flow.redeemed:
                    return 400, _oauth_error("invalid_grant", "AADSTS70000: The device code is not valid.")
                if now > flow.expires_at:
                    return 400, _oauth_error("expired_token", "AADSTS70020: The device code has expired.")
                if not flow.approved:
                    return 400, _oauth_error(
                        "authorization_pending",
                        "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending.",
                    )
                flow.redeemed = True
                scope = flow.scope
                client_id = flow.client_id
            elif grant_type == "refresh_token":
                rt = form.get("refresh_token", "")
                grant = self._refresh.pop(rt, None)
                if grant is None or now > grant.expires_at:
                    return 400, _oauth_error(
                        "invalid_grant",
                        "AADSTS70008: The provided authorization code or refresh token has expired due "
                        "to inactivity or was revoked. Sign in again.",
                    )
                scope = form.get("scope") or grant.scope
                client_id = grant.client_id
            elif grant_type == "authorization_code":
                grant = self._auth_codes.pop(form.get("code", ""), None)
                if grant is None or now > grant.expires_at:
                    return 400, _oauth_error(
                        "invalid_grant", "AADSTS70000: The authorization code is invalid."
                    )
                if grant.challenge is not None:
                    verifier = form.get("code_verifier", "").encode()
                    if _b64url(hashlib.sha256(verifier).digest()) != grant.challenge:
                        return 400, _oauth_error(
                            "invalid_grant",
                            "AADSTS50148: The code_verifier does not match the code_challenge.",
                        )
                scope = grant.scope
                client_id = grant.client_id
                nonce = grant.nonce
            else:
                return 400, _oauth_error(
                    "unsupported_grant_type",
                    f"AADSTS70003: The app requested an unsupported grant type '{grant_type}'.",
                )
            refresh = secrets.token_urlsafe(48)
            self._refresh[refresh] = Grant(client_id, scope, now + self.refresh_lifetime)
        return 200, self._issue(client_id, scope, refresh, now, nonce)

    def _issue(
        self, client_id: str, scope: str, refresh: str, now: float, nonce: str | None = None
    ) -> dict[str, Any]:
        u = self.user
        graph_scopes = (
            " ".join(
                s.rsplit("/", 1)[-1]
                for s in scope.split()
                if s not in {"openid", "profile", "offline_access"}
            )
            or "User.Read"
        )
        key = self._signing_key()
        headers = {"kid": self.kid}
        access = jwt.encode(
            {
                "aud": "https://graph.microsoft.com",
                "iss": self.issuer,
                "iat": int(now),
                "nbf": int(now),
                "exp": int(now + self.token_lifetime),
                "oid": u.oid,
                "tid": u.tid,
                "sub": u.oid,
                "name": u.name,
                "upn": u.upn,
                "scp": graph_scopes,
                "appid": client_id,
                "uti": uuid.uuid4().hex,
                "ver": "1.0",
                "iat_precise": now,
            },
            key,
            algorithm="RS256",
            headers=headers,
        )
        id_token = jwt.encode(
            {
                "aud": client_id,
                "iss": self.issuer,
                "iat": int(now),
                "nbf": int(now),
                "exp": int(now + 3600),
                "oid": u.oid,
                "tid": u.tid,
                "sub": u.oid,
                "name": u.name,
                "preferred_username": u.upn,
                "ver": "2.0",
                **({"nonce": nonce} if nonce else {}),
            },
            key,
            algorithm="RS256",
            headers=headers,
        )
        client_info = _b64url(json.dumps({"uid": u.oid, "utid": u.tid}).encode())
        return {
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": int(self.token_lifetime),
            "ext_expires_in": int(self.token_lifetime),
            "access_token": access,
            "refresh_token": refresh,
            "id_token": id_token,
            "client_info": client_info,
        }

    def save_grants(self, path: Path) -> None:
        """Keep refresh tokens across restarts (a test tenant's secrets: the file is mode 0600)."""
        with self._lock:
            data = {rt: vars(g) for rt, g in self._refresh.items()}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"not_before": self._not_before, "refresh": data}, f)

    def load_grants(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            grants = {rt: Grant(**g) for rt, g in data["refresh"].items()}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"cannot read {path}: {e}; delete it (users then sign in again)") from e
        with self._lock:
            self._refresh.update(grants)
            self._not_before = float(data.get("not_before", 0.0))

    def revoke_all(self) -> None:
        """Invalidate every refresh token and every access token issued so far (a forced sign-out)."""
        with self._lock:
            self._refresh.clear()
            self._not_before = self.clock() + 1

    def check(self, bearer: str | None) -> dict[str, Any]:
        """Return the claims of a valid access token or raise TokenInvalid saying why."""
        if not bearer:
            raise TokenInvalid("Access token is empty.")
        try:
            claims = jwt.decode(
                bearer,
                self._signing_key().public_key(),
                algorithms=["RS256"],
                audience="https://graph.microsoft.com",
                issuer=self.issuer,
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},  # self.clock's
                leeway=0,
            )
        except jwt.PyJWTError as e:
            raise TokenInvalid(f"Access token validation failure: {e}.") from None
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= self.clock():
            raise TokenInvalid("Lifetime validation failed, the token is expired.")
        if float(claims.get("iat_precise", claims["iat"])) < self._not_before:
            raise TokenInvalid("Access token has been revoked; sign in again.")
        return claims


def _oauth_error(code: str, description: str) -> dict[str, Any]:
    return {
        "error": code,
        "error_description": description,
        "error_codes": [int(m.group(1))] if (m := re.match(r"AADSTS(\d+)", description)) else [],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
    }
