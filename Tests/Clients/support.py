"""Helpers shared by the scripts in Tests/Clients (each adds its own folder to sys.path by being run)."""
import os
import socket
import struct
import time
import urllib.request
import zlib


def check(condition, message):
    if not condition:
        raise AssertionError(message)
    print("  ok:", message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(width, height, filler=2048):
    """A PNG as far as a header reader can tell: signature, IHDR with the size, then filler."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + os.urandom(filler)


def wait_ready(base, seconds=30):
    """Waits until a starting `gomodel serve` at `base` answers /readyz."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(base + "/readyz", timeout=1)
            return
        except Exception:
            time.sleep(0.2)
    raise AssertionError(f"gomodel serve at {base} did not become ready in {seconds} s")
