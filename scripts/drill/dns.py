#!/usr/bin/env python3
"""Drill DNS-failover stand-in: the Route53 failover record pair, as a file.

    dns.py --primary HOST:PORT --secondary HOST:PORT --out FILE --events FILE
           [--interval S] [--threshold N] [--max-seconds S]

Every --interval seconds it asks each region's NLB stand-in for GET /hello/DnsProbe (4 s
to connect and answer, like a Route53 checker): healthy when an API host answers
below 500 (a 404 for the unknown user means the request reached a healthy target and
its database). /readyz is on the hosts' admin port only, which the internet never
reaches, as Route53's checks reach only the NLB's listener. A region turns unhealthy after
--threshold failures in a row and healthy again after --threshold successes in a row,
as the Terraform health checks do (request_interval 10, failure_threshold 3). The
answer is the primary while it is healthy, else the secondary while it is healthy,
else the primary (Route53 answers the primary when both are unhealthy). It is written
to --out (atomically: a new file renamed over the old) and every change is appended to
--events as {"t", "answer", "healthy"}.

Bounded: stops after --max-seconds, or on SIGTERM/SIGINT. Only standard library.
"""

import argparse
import http.client
import json
import os
import signal
import sys
import time


def healthy_now(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=4)
        conn.request("GET", "/hello/DnsProbe")
        ok = conn.getresponse().status < 500
        conn.close()
        return ok
    except (OSError, http.client.HTTPException):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--primary", required=True)
    parser.add_argument("--secondary", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--threshold", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=1200.0)
    args = parser.parse_args()

    stopping = False

    def stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    regions = [args.primary, args.secondary]
    # Like a new Route53 health check, each region starts healthy.
    healthy = {r: True for r in regions}
    streak = {r: 0 for r in regions}
    answer = None
    started = time.monotonic()
    events = open(args.events, "a", buffering=1)
    while not stopping and time.monotonic() - started < args.max_seconds:
        round_started = time.monotonic()
        for region in regions:
            ok = healthy_now(region)
            if ok == healthy[region]:
                streak[region] = 0
            else:
                streak[region] += 1
                if streak[region] >= args.threshold:
                    healthy[region] = ok
                    streak[region] = 0
        new_answer = next((r for r in regions if healthy[r]), args.primary)
        if new_answer != answer:
            tmp = f"{args.out}.tmp"
            with open(tmp, "w") as f:
                f.write(new_answer + "\n")
            os.replace(tmp, args.out)
            events.write(json.dumps({"t": time.time(), "answer": new_answer, "healthy": healthy}) + "\n")
            answer = new_answer
        time.sleep(max(0.0, args.interval - (time.monotonic() - round_started)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
