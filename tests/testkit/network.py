"""A private network namespace for the browser tests.

WebRTC never uses loopback addresses (Chromium and aiortc both skip them), so a test of a real
WebRTC call needs other addresses. This namespace has its own loopback and a veth pair inside it
(10.251.0.1 and 10.251.0.2, test hosts of our own): the browser, the servers and the fake
OpenAI peer all live in it, and nothing in it can reach, or be reached from, anything else.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import uuid
from pathlib import Path

CLONE_NEWNET = 0x40000000
ADDRESSES = ("10.251.0.1", "10.251.0.2")


class TestNetwork:
    """``ip netns`` namespace with lo and a veth pair up; ``delete()`` removes it."""

    def __init__(self) -> None:
        self.name = f"lipstream-test-{uuid.uuid4().hex[:8]}"
        _ip("netns", "add", self.name)
        try:
            inside = ("-n", self.name)
            _ip(*inside, "link", "set", "lo", "up")
            _ip(*inside, "link", "add", "lst0", "type", "veth", "peer", "name", "lst1")
            for device, address in zip(("lst0", "lst1"), ADDRESSES, strict=True):
                _ip(*inside, "addr", "add", f"{address}/30", "dev", device)
                _ip(*inside, "link", "set", device, "up")
        except BaseException:
            self.delete()
            raise

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def enter(self) -> None:
        """Move the calling thread into the namespace (its new sockets open there)."""
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"cannot enter network namespace {self.name}")
        finally:
            os.close(fd)

    def wrapper(self, program: str, folder: Path) -> Path:
        """An executable that runs ``program`` inside the namespace (for Playwright's launch)."""
        path = folder / f"{Path(program).name}-in-{self.name}"
        path.write_text(f'#!/bin/sh\nexec ip netns exec {self.name} {program} "$@"\n')
        path.chmod(0o755)
        return path

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, check=False)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()} (tests run as root)")
