#!/usr/bin/env python3
"""Drill load client: writes through a URL and logs every acknowledged write.

    load.py (--url http://10.71.0.100:8080 | --dns FILE) --out DIR [--name NAME]
            [--rate N] [--max-seconds S] [--max-requests N] [--timeout S]

With --dns, the address comes from FILE, the DNS-failover stand-in's answer
("host:port"), read again once a second (a short DNS TTL): when the answer changes,
the next request goes to the new address on a new connection.

Each write is PUT /hello/<user> of a user never written before (the name encodes the
client name and a counter in letters, as usernames must be letters). Every 204 is
appended to DIR/NAME.acked.jsonl as {"user", "date", "t", "acked_at"} and flushed at once, so a
write the server acknowledged is on disk even if the drill is killed. Every other
outcome (status, refused, timeout) goes to DIR/NAME.failed.jsonl with its time and the
date it sent. Both name the address the request went to ("via").

Bounded: stops after --max-seconds or --max-requests, or on SIGTERM/SIGINT, or when
DIR/NAME.stop exists (checked between requests). Only standard library; each request
has a --timeout (2 s; longer for a client that waits out a hung commit).
"""

import argparse
import http.client
import json
import os
import random
import sys
import time
import urllib.parse

from bounded import stop_on_signals

LETTERS = "abcdefghij"


def letters(n: int) -> str:
    return "".join(LETTERS[int(d)] for d in str(n))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url")
    target.add_argument("--dns", help="file holding the DNS stand-in's answer, host:port")
    parser.add_argument("--out", required=True)
    parser.add_argument("--name", default="load")
    parser.add_argument("--rate", type=float, default=50.0, help="writes per second")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per request")
    args = parser.parse_args()

    fixed = None
    if args.url:
        url = urllib.parse.urlsplit(args.url)
        fixed = f"{url.hostname}:{url.port or 80}"
    resolved = {"at": 0.0, "answer": fixed}

    def resolve():
        if fixed is not None:
            return fixed
        if time.monotonic() - resolved["at"] >= 1.0:
            try:
                with open(args.dns) as f:
                    answer = f.read().strip()
                if answer:
                    resolved["answer"] = answer
            except OSError:
                pass
            resolved["at"] = time.monotonic()
        return resolved["answer"]
    stop_file = os.path.join(args.out, f"{args.name}.stop")
    prefix = "".join(c for c in args.name if c.isalpha()) or "load"
    stopping = stop_on_signals()

    acked = open(os.path.join(args.out, f"{args.name}.acked.jsonl"), "a", buffering=1)
    failed = open(os.path.join(args.out, f"{args.name}.failed.jsonl"), "a", buffering=1)
    started = time.monotonic()
    interval = 1.0 / args.rate
    conn = None
    conn_via = None
    for i in range(args.max_requests):
        if stopping() or time.monotonic() - started > args.max_seconds or os.path.exists(stop_file):
            break
        user = f"{prefix}x{letters(i)}"
        date = f"{random.randint(1950, 2005):04d}-{random.randint(1, 12):02d}-{random.randint(1, 28):02d}"
        body = json.dumps({"dateOfBirth": date})
        via = resolve()
        if via is None:
            time.sleep(interval)
            continue
        if conn is not None and conn_via != via:
            conn.close()
            conn = None
        sent_at = time.time()
        outcome = None
        reason = None
        # A kept-alive connection the server closed while idle fails the next request
        # before any answer; like curl and browsers, retry that once on a new
        # connection (PUT is idempotent). Any other failure counts.
        for attempt in (1, 2):
            reused = conn is not None
            try:
                if conn is None:
                    host, port = via.rsplit(":", 1)
                    conn = http.client.HTTPConnection(host, int(port), timeout=args.timeout)
                    conn_via = via
                conn.request("PUT", f"/hello/{user}", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                answer = response.read()
                outcome = response.status
                # Why a write was refused (the error's first words), for the report's reader.
                reason = answer[:120].decode("utf-8", "replace") if outcome != 204 else None
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
                break
            except (OSError, http.client.HTTPException) as err:
                outcome = type(err).__name__
                if conn is not None:
                    conn.close()
                conn = None
                closed_while_idle = isinstance(
                    err, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
                )
                if not (reused and closed_while_idle and attempt == 1):
                    break
        if outcome == 204:
            acked.write(json.dumps({"user": user, "date": date, "t": sent_at, "acked_at": time.time(), "via": via}) + "\n")
        else:
            failed.write(json.dumps({"user": user, "date": date, "t": sent_at, "outcome": outcome, "via": via, "reason": reason}) + "\n")
        elapsed = time.time() - sent_at
        if elapsed < interval:
            time.sleep(interval - elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
