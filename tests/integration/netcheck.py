"""Traffic helper run inside the lab's namespaces (`ip netns exec`): an echo service and a sender.

`echo --marker DIR` serves UDP and TCP echo on port ECHO_PORT (the marker only tags the process for
leftover cleanup). `send udp|tcp ADDR NBYTES` sends NBYTES to ADDR:ECHO_PORT, reads the echo back and prints
the number of bytes echoed.
"""

from __future__ import annotations

import socket
import sys
import threading

ECHO_PORT = 7777
CHUNK = 1200


def _tcp_conn(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def echo() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", ECHO_PORT))
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", ECHO_PORT))
    tcp.listen(16)

    def serve_tcp() -> None:
        while True:
            conn, _ = tcp.accept()
            threading.Thread(target=_tcp_conn, args=(conn,), daemon=True).start()

    threading.Thread(target=serve_tcp, daemon=True).start()
    print("listening", flush=True)
    while True:
        data, peer = udp.recvfrom(65536)
        udp.sendto(data, peer)


def send(proto: str, addr: str, nbytes: int) -> int:
    payload = b"x" * CHUNK
    echoed = 0
    if proto == "tcp":
        with socket.create_connection((addr, ECHO_PORT), timeout=10) as s:
            s.sendall(b"x" * nbytes)
            s.shutdown(socket.SHUT_WR)
            while data := s.recv(65536):
                echoed += len(data)
        return echoed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.connect((addr, ECHO_PORT))
        sent = 0
        while sent < nbytes:
            # One datagram at a time, waiting for its echo: no loss from overrunning a queue.
            s.send(payload)
            sent += len(payload)
            try:
                echoed += len(s.recv(65536))
            except TimeoutError:
                continue
    return echoed


def main() -> int:
    if sys.argv[1] == "echo":
        echo()
        return 0
    print(send(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
