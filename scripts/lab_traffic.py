#!/usr/bin/env python3
"""Traffic for the path ground-truth captures: one role per process, run inside a lab namespace.

Servers print ``ready`` once listening and serve exactly what their clients ask for, then exit;
clients exit 0 once everything they sent was answered (or received).  Every role takes the
address to bind or connect to, so traffic only ever goes where the capture script points it
(addresses inside the lab).

Roles:

* ``tcp-server ADDR PORT MODE NBYTES WRITE``: one connection; MODE ``sink`` reads until EOF,
  ``source`` sends NBYTES in WRITE-byte writes and closes.
* ``tcp-client ADDR PORT MODE NBYTES WRITE``: the other end (``sink`` here sends, ``source``
  receives).
* ``rr-server ADDR PORT N REPLY``: answers requests (HTTP-like: a request line, a REPLY-byte
  response with Content-Length) on any number of connections until N were answered.
* ``rr-client ADDR PORT N PER_CONN``: N requests, PER_CONN per connection (1: a new
  connection each; N: keep-alive), each response read in full.
* ``udp-echo ADDR PORT N``: echoes N datagrams back to their sender.
* ``udp-client ADDR PORT N SIZE BURST``: N datagrams of SIZE bytes in bursts of BURST,
  waiting for each burst's echoes (1 s timeout per datagram) before the next.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

_TIMEOUT = 20.0


def _listen(addr: str, port: int) -> socket.socket:
    server = socket.create_server((addr, port), reuse_port=False)
    server.settimeout(_TIMEOUT)
    print("ready", flush=True)
    return server


def _read_exact(conn: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def _stream(conn: socket.socket, sending: bool, nbytes: int, write: int) -> None:
    if sending:
        block = b"x" * write
        for offset in range(0, nbytes, write):
            conn.sendall(block[: min(write, nbytes - offset)])
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)  # wait for the peer's close
    else:
        total = 0
        while chunk := conn.recv(65536):
            total += len(chunk)
        if total != nbytes:
            raise ConnectionError(f"received {total} of {nbytes} bytes")


def tcp_server(addr: str, port: str, mode: str, nbytes: str, write: str) -> None:
    with _listen(addr, int(port)) as server:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(_TIMEOUT)
            _stream(conn, mode == "source", int(nbytes), int(write))


def tcp_client(addr: str, port: str, mode: str, nbytes: str, write: str) -> None:
    with socket.create_connection((addr, int(port)), timeout=_TIMEOUT) as conn:
        _stream(conn, mode == "sink", int(nbytes), int(write))


def _read_request(buffered: bytes, conn: socket.socket) -> tuple[bytes, bytes] | None:
    while b"\r\n\r\n" not in buffered:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        buffered += chunk
    request, _, rest = buffered.partition(b"\r\n\r\n")
    return request, rest


def rr_server(addr: str, port: str, n: str, reply: str) -> None:
    body = b"y" * int(reply)
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    left = int(n)
    with _listen(addr, int(port)) as server:
        while left:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(_TIMEOUT)
                pending = b""
                while left and (got := _read_request(pending, conn)) is not None:
                    pending = got[1]
                    conn.sendall(response)
                    left -= 1


def rr_client(addr: str, port: str, n: str, per_conn: str) -> None:
    request = b"GET /hello HTTP/1.1\r\nHost: lab\r\nConnection: keep-alive\r\n\r\n"
    left = int(n)
    while left:
        with socket.create_connection((addr, int(port)), timeout=_TIMEOUT) as conn:
            for _ in range(min(int(per_conn), left)):
                conn.sendall(request)
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(1)
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                _read_exact(conn, length)
                left -= 1


def udp_echo(addr: str, port: str, n: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((addr, int(port)))
        sock.settimeout(_TIMEOUT)
        print("ready", flush=True)
        for _ in range(int(n)):
            data, peer = sock.recvfrom(65536)
            sock.sendto(data, peer)


def udp_client(addr: str, port: str, n: str, size: str, burst: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        payload = b"z" * int(size)
        left = int(n)
        while left:
            count = min(int(burst), left)
            for _ in range(count):
                sock.sendto(payload, (addr, int(port)))
            for _ in range(count):
                sock.recvfrom(65536)
            left -= count


ROLES: dict[str, Callable[..., None]] = {
    "tcp-server": tcp_server,
    "tcp-client": tcp_client,
    "rr-server": rr_server,
    "rr-client": rr_client,
    "udp-echo": udp_echo,
    "udp-client": udp_client,
}


if __name__ == "__main__":
    ROLES[sys.argv[1]](*sys.argv[2:])
