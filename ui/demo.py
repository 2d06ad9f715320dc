"""The demo panel's door to the simulator: `DemoBridge`, the js_api of the window in `lifeboat demo` only.

It is `Bridge` plus two methods that call the local simulator's admin API (plain HTTP on loopback) to
cut or restore the stand-in provider's mail (an Exchange-only outage: sign-in and `/me` stay up); it
never talks to the provider itself. The app hands the window
this class only in demo mode, so a real window has no such methods and the page shows no demo panel.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from sync.errors import BadArgument, ConfigError, Unreachable
from ui.bridge import Bridge, _api, _str

# the outages a newcomer can pick in the panel (the simulator knows a few more). Each is an
# Exchange-only outage (simulator scope "mail"), the most common kind of Microsoft 365 incident: mail
# requests fail while sign-in and the directory (`/me`) keep answering.
OUTAGES = {
    "refuse": "Exchange Online resets every mail request; sign-in still works",
    "503": "Exchange Online answers HTTP 503 to every mail request",
    "hang": "mail requests hang (timeouts); sign-in still works",
    "stop": "mail requests are closed without an answer",
}
SCOPE = "mail"
ADMIN_TIMEOUT = 10.0  # seconds: the admin port is local and always answers


def _loopback_admin(url: str) -> str:
    parts = urlsplit(url)
    try:
        local = ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        local = parts.hostname == "localhost"
    if parts.scheme != "http" or not local or not parts.path.rstrip("/").endswith("/_sim"):
        raise ConfigError(f"the demo panel only drives a local simulator's admin API, not {url!r}",
                          fix="start it with `lifeboat demo`")
    return url.rstrip("/")


class DemoBridge(Bridge):
    """Bridge + the demo panel (`demo_outage`, `demo_state`)."""

    def __init__(self, store: Any, commands: Any | None = None, *, me: str = "", admin_url: str,
                 **kwargs: Any) -> None:
        super().__init__(store, commands, me=me, **kwargs)
        self._admin = _loopback_admin(admin_url)

    def _admin_call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self._admin}/{path}", data=data, method=method,  # noqa: S310 - http on loopback only (_loopback_admin)
                                     headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
        try:
            with opener.open(req, timeout=ADMIN_TIMEOUT) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode(errors="replace")
            raise BadArgument(f"the simulator refused {path}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise Unreachable(f"the demo simulator does not answer ({exc})",
                              fix="restart `lifeboat demo`") from exc

    @_api
    def demo_state(self) -> dict[str, Any]:
        """What the panel shows: the simulated provider's current outage and the choices."""
        state = self._admin_call("GET", "state")
        return {"outage": state.get("outage", "normal"), "choices": OUTAGES}

    @_api
    def demo_outage(self, mode: Any) -> dict[str, Any]:
        """Cut the simulated provider (one of OUTAGES) or restore it ("normal")."""
        mode = _str(mode, "mode", 20)
        if mode != "normal" and mode not in OUTAGES:
            raise BadArgument(f"outage must be normal or one of {', '.join(OUTAGES)}, not {mode!r}")
        self._admin_call("POST", "outage", {"mode": mode, "scope": SCOPE})
        return {"outage": mode}
