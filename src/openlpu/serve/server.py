"""Running the app with uvicorn: in the foreground (`openlpu serve`) or on a background thread (tests,
benchmarks), always on a socket bound before the server starts, so port 0 picks a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from openlpu.errors import UserError


def bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a TCP port; give a number from 1 to 65535 (0 picks a free one)")
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say so, and a token
    # held back by Nagle waits for the client's delayed ACK, about 40 ms.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror}); choose another --port or --host") from None
    return sock


def _server(app: FastAPI) -> uvicorn.Server:
    # The default keep-alive of 5 s would close idle benchmark connections; the backlog admits a crowd at once.
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=60, backlog=2048))


def serve_forever(app: FastAPI, sock: socket.socket) -> None:
    _server(app).run(sockets=[sock])


@contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` on a thread; yields its base URL (http://host:port) and stops it on exit."""
    sock = bind(host, port)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
