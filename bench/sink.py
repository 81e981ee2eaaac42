"""The guarded port's service in the benchmark lab, run in the server's namespace as
its own process (so it takes no time from the process that measures):

    python -m bench.sink [PORT]

It accepts every connection and reads what it sends until the client closes.
"""

from __future__ import annotations

import selectors
import socket
import sys


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 22
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(4096)
    server.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ)
    buffer = bytearray(1 << 20)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is server:
                try:
                    conn, _ = server.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                selector.register(conn, selectors.EVENT_READ)
                continue
            try:
                read = sock.recv_into(buffer)
            except BlockingIOError:
                continue
            except OSError:
                read = 0
            if not read:
                selector.unregister(sock)
                sock.close()


if __name__ == "__main__":
    main()
