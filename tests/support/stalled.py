"""A page that joins a visit and then never reads its WebSocket again.

Spoken over a raw socket with a small receive buffer, so that what the server sends
piles up in the server's buffers as it would for a hung browser or a hostile client.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any

from tests.support.server import Server


class StalledPage:
    def __init__(self, server: Server, token: str) -> None:
        self.server = server
        self.token = token
        self.sock: socket.socket | None = None

    def join(self) -> None:
        """Upgrade to a WebSocket, send the join, and read nothing from then on."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(20)  # a server that stops reading fails the test, not hangs it
        sock.connect(("127.0.0.1", self.server.port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                     .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.sock = sock
        self.send({"type": "join", "token": self.token})

    def send(self, message: dict[str, Any]) -> None:
        assert self.sock is not None
        self.sock.sendall(frame(json.dumps(message).encode()))

    def flood(self, count: int, size: int) -> None:
        """``count`` messages of an unknown ``type`` (``size`` characters and a number),
        each answered with an error this page will never read."""
        assert self.sock is not None
        self.sock.sendall(b"".join(frame(json.dumps({"type": f"{i}-" + "x" * size}).encode())
                                   for i in range(count)))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def frame(payload: bytes) -> bytes:
    """One masked text frame (client to server), RFC 6455."""
    head = bytes([0x81])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    elif len(payload) < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", len(payload))
    mask = os.urandom(4)
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + masked
