#!/usr/bin/env python3
"""Drill DNS-failover stand-in: the Route53 failover record pair, as a file.

    dns.py --primary HOST:PORT --primary-backend NAME --secondary HOST:PORT
           --secondary-backend NAME --haproxy-socket PATH --out FILE --events FILE
           [--interval S] [--threshold N] [--max-seconds S]

Each record is healthy as Terraform configures it (terraform/main.tf, "DNS failover"):
its Route53 health check passes *and*, through the alias's evaluate_target_health, its
load balancer has at least one healthy target.

- The health check is TCP to the region's NLB listener (--primary, --secondary) every
  --interval seconds (request_interval 10), 4 s to connect; it turns unhealthy after
  --threshold failures in a row and healthy again after --threshold successes in a row
  (failure_threshold 3).
- The targets' health is the NLB stand-in's own (HAProxy, asked on --haproxy-socket for
  its backend --primary-backend or --secondary-backend): at least one server UP, which
  it marks from the target group's check of /readyz on the admin port. A draining or
  down server does not count; an unreadable socket counts as no healthy target.

So an in-region failover moves DNS only if every host of the region fails /readyz for
the target group's whole threshold, and dob-api's readiness grace (DOB_READY_GRACE_MS)
keeps /readyz up through a leader election.

The answer is the primary while it is healthy, else the secondary while it is healthy,
else the primary (Route53 answers the primary when both are unhealthy). It is written
to --out (atomically: a new file renamed over the old) and every change is appended to
--events as {"t", "answer", "healthy"}.

Bounded: stops after --max-seconds, or on SIGTERM/SIGINT. Only standard library.
"""

import argparse
import json
import os
import socket
import sys
import time

import nlb
from bounded import stop_on_signals


def listener_answers(address: str) -> bool:
    """Route53's TCP check: a connection to the listener within 4 s."""
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=4).close()
        return True
    except OSError:
        return False


def backend_has_healthy_target(haproxy_socket: str, backend: str) -> bool:
    """evaluate_target_health: at least one of the backend's servers is UP (an UP one
    about to go down still counts, as it still takes connections)."""
    return any(status.startswith("UP") for status in nlb.statuses(haproxy_socket, backend))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--primary", required=True)
    parser.add_argument("--primary-backend", required=True)
    parser.add_argument("--secondary", required=True)
    parser.add_argument("--secondary-backend", required=True)
    parser.add_argument("--haproxy-socket", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--threshold", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=1200.0)
    args = parser.parse_args()

    stopping = stop_on_signals()

    regions = [args.primary, args.secondary]
    backend = {args.primary: args.primary_backend, args.secondary: args.secondary_backend}
    # Like a new Route53 health check, each listener starts healthy.
    healthy = {r: True for r in regions}
    streak = {r: 0 for r in regions}
    answer = None
    started = time.monotonic()
    events = open(args.events, "a", buffering=1)
    while not stopping() and time.monotonic() - started < args.max_seconds:
        round_started = time.monotonic()
        record_healthy = {}
        for region in regions:
            ok = listener_answers(region)
            if ok == healthy[region]:
                streak[region] = 0
            else:
                streak[region] += 1
                if streak[region] >= args.threshold:
                    healthy[region] = ok
                    streak[region] = 0
            record_healthy[region] = healthy[region] and backend_has_healthy_target(
                args.haproxy_socket, backend[region]
            )
        new_answer = next((r for r in regions if record_healthy[r]), args.primary)
        if new_answer != answer:
            tmp = f"{args.out}.tmp"
            with open(tmp, "w") as f:
                f.write(new_answer + "\n")
            os.replace(tmp, args.out)
            events.write(json.dumps({"t": time.time(), "answer": new_answer, "healthy": record_healthy}) + "\n")
            answer = new_answer
        time.sleep(max(0.0, args.interval - (time.monotonic() - round_started)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
