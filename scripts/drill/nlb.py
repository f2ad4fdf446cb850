#!/usr/bin/env python3
"""The drill's NLB stand-in (HAProxy) as its targets' health: the status of each server
of a backend, from `show stat` on its admin socket. dns.py asks it for
evaluate_target_health, drill.sh for "every host in service".

    nlb.py SOCKET BACKEND     exit 0 when every server of BACKEND is UP, else 1

Only standard library.
"""

import socket
import sys

# `show stat` is CSV: proxy name, server name, ..., status in the 18th column.
STATUS = 17


def statuses(haproxy_socket: str, backend: str) -> list:
    """The status of each server of `backend` ("UP", "DOWN", "DRAIN", "UP 1/2", ...);
    empty when the socket cannot be read."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(haproxy_socket)
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return []
    rows = [line.split(",") for line in data.decode(errors="replace").splitlines()]
    return [
        row[STATUS]
        for row in rows
        if len(row) > STATUS and row[0] == backend and row[1] not in ("BACKEND", "FRONTEND")
    ]


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    servers = statuses(sys.argv[1], sys.argv[2])
    return 0 if servers and all(status == "UP" for status in servers) else 1


if __name__ == "__main__":
    sys.exit(main())
