#!/usr/bin/env python3
"""Drill role sampler: who leads, as each member's Patroni says, over the whole run.

    roles.py --member NAME=HOST:PORT [--member ...] --events FILE
             [--interval S] [--timeout S] [--max-seconds S]

Every --interval seconds it asks each member's Patroni REST API for GET /patroni (at
most --timeout seconds each) and appends a line to --events whenever a member's answer
changes: {"t", "member", "role", "state", "timeline"}. role is Patroni's, with "master"
spelled "primary" (Patroni 3.0 says master, later releases primary); a member that does
not answer in time (stopped, stalled, cut off) is role "unknown": a stall is not a
demotion, and the report keeps the last role it knew.

The report counts leader_changes from these lines and draws who led in report.html.

Bounded: stops after --max-seconds, or on SIGTERM/SIGINT. Only standard library.
"""

import argparse
import http.client
import json
import sys
import time

from bounded import stop_on_signals


def ask(address: str, timeout: float) -> dict:
    """The member's role, state and timeline; role "unknown" when it does not answer."""
    host, port = address.rsplit(":", 1)
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        conn.request("GET", "/patroni")
        response = conn.getresponse()
        body = json.loads(response.read() or b"{}")
        conn.close()
    except (OSError, http.client.HTTPException, ValueError):
        return {"role": "unknown", "state": None, "timeline": None}
    role = body.get("role") or "unknown"
    return {
        "role": "primary" if role == "master" else role,
        "state": body.get("state"),
        "timeline": body.get("timeline"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--member", action="append", required=True, help="NAME=HOST:PORT")
    parser.add_argument("--events", required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=0.4)
    parser.add_argument("--max-seconds", type=float, default=2400.0)
    args = parser.parse_args()
    members = dict(m.split("=", 1) for m in args.member)

    stopping = stop_on_signals()

    last = {}
    started = time.monotonic()
    events = open(args.events, "a", buffering=1)
    while not stopping() and time.monotonic() - started < args.max_seconds:
        round_started = time.monotonic()
        for name, address in members.items():
            answer = ask(address, args.timeout)
            if answer != last.get(name):
                events.write(json.dumps({"t": time.time(), "member": name, **answer}) + "\n")
                last[name] = answer
        time.sleep(max(0.0, args.interval - (time.monotonic() - round_started)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
