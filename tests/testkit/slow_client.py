"""A client that sends its request a byte at a time (slowloris)."""

from __future__ import annotations

import socket
import time


def trickle_until_closed(host: str, port: int, seconds: float) -> float:
    """Send a request's headers a byte at a time; seconds until the server hung up."""
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=seconds) as conn:
        conn.settimeout(0.2)
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
            if time.monotonic() - start > seconds:
                break
            try:
                conn.sendall(bytes([byte]))
                if conn.recv(1024) == b"":
                    return time.monotonic() - start
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - start
    return float("inf")
