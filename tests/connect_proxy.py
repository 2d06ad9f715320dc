"""A small HTTP CONNECT proxy for tests, on loopback only, in its own thread (asyncio).

`ConnectProxy(mode)`: "tunnel" relays bytes both ways to the CONNECT target (which must be on
127.0.0.1: it never opens a connection anywhere else); "407" answers Proxy Authentication Required with
a `Proxy-Authenticate: NTLM` / `Negotiate` challenge, as an enterprise proxy does; "403" refuses the
target (a blocked category); "502" says the upstream could not be reached (what a proxy answers when
Microsoft is down). `mode` may be changed while it runs. `connects` lists the targets asked for.
Bounded: at most `max_connections` connections, then it refuses; stopped by `with` or stop().
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

ANSWERS = {
    "407": (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\n"
            b"Proxy-Authenticate: Negotiate\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    "403": b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    "502": b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
}


class ConnectProxy:
    def __init__(self, mode: str = "tunnel", max_connections: int = 500) -> None:
        if mode not in ("tunnel", *ANSWERS):
            raise ValueError(f"unknown proxy mode {mode!r}")
        self.mode = mode
        self.max_connections = max_connections
        self.connects: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="connect-proxy")
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the test proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        """Close the listener, end every open tunnel, then stop the loop."""
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, _version = ([*line.split(" "), "", ""])[:3]
            self.connects.append(f"{method} {target}")
            if len(self.connects) > self.max_connections or method != "CONNECT":
                writer.write(ANSWERS["403"])
                return
            if self.mode != "tunnel":
                writer.write(ANSWERS[self.mode])
                return
            host, _, port = target.rpartition(":")
            if host not in ("127.0.0.1", "localhost"):  # loopback only, never anywhere else
                writer.write(ANSWERS["403"])
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await asyncio.wait_for(src.read(65536), 60):
                dst.write(data)
                await dst.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()
