"""A PAC file served over HTTP on loopback, for tests: `PacServer(script)` answers GET /proxy.pac with
`script` (application/x-ns-proxy-autoconfig), or with `status` when it is not 200; `fetches` counts the
GETs. Bounded to loopback; stopped by `with` or stop()."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def pac_for(host_port: str, proxy_port: int) -> str:
    """A PAC script that sends https://<host_port>/ through the proxy on 127.0.0.1 and the rest DIRECT."""
    return ("function FindProxyForURL(url, host) {\n"
            f"  if (shExpMatch(url, \"https://{host_port}/*\")) return \"PROXY 127.0.0.1:{proxy_port}\";\n"
            "  return \"DIRECT\";\n}\n")


class PacServer:
    def __init__(self, script: str, status: int = 200) -> None:
        self.script = script
        self.status = status
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = outer.script.encode() if outer.status == 200 else b"not here"
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/x-ns-proxy-autoconfig")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="pac-server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/proxy.pac"

    def __enter__(self) -> PacServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
