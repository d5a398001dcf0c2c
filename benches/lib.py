"""Shared by the benches written in Python (cold_start.sh, wake.sh); imported, not run. They run
from the repository's root, with `benches` on the module path."""

import socket
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def first_byte(port, host, retry_refused=False):
    """Connects (again while refused, if asked), sends GET /; returns when the answer's first
    byte came (a `time.perf_counter()`) and the answer's head, which must say 200."""
    while True:
        s = socket.socket()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            s.connect(("127.0.0.1", port))
            break
        except ConnectionRefusedError:
            s.close()
            if not retry_refused:
                raise
            # A tight loop would take a core from the booting app on a small machine.
            time.sleep(0.001)
    s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    head = s.recv(1)
    if not head:
        raise RuntimeError(f"{host}: connection closed without an answer")
    took = time.perf_counter()
    s.settimeout(10)
    while b"\r\n\r\n" not in head:
        more = s.recv(4096)
        if not more:
            break
        head += more
    s.close()
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{host}: {head[:200]!r}")
    return took, head.decode("latin-1")


def wait(cond, what, timeout=60):
    """Polls `cond` until it holds; an unreachable admin API counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)
