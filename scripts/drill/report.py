#!/usr/bin/env python3
"""Drill report: per scenario, from the drill's events, the load logs and the final table.

    report.py --events EVENTS.jsonl --load DIR --users FINAL.tsv --dr-users DR.tsv
              --pitr-users PITR.tsv --pitr-kept KEPT.tsv
              --split-dr-users SPLIT.tsv
              --west-nlb HOST:PORT --dr-nlb HOST:PORT --ttl S
              --dns-events DNS.jsonl --roles ROLES.jsonl --out REPORT.json
              [--html REPORT.html]

Writes REPORT.json ({"scenarios": [...], "ok": bool}) and prints the same as a table.
With --html, also a picture of each scenario (timeline.py). Exits 1 when any scenario
is not ok.

- rto_s: seconds from the fault to the first acknowledgement, through the NLB, of a
  write sent after the fault.
- acked_lost: writes acknowledged (204) in the scenario's window that the final leader
  does not hold with the acknowledged date.
- failed_requests: writes through the NLB in the window that were not acknowledged.
- write_unavailable_s: the longest stretch, from the fault to the scenario's end (or its
  load's last request), in which the clients that follow DNS had no write acknowledged.
- dns_answers_dr_s: seconds of the scenario's window in which the DNS stand-in answered
  the DR region (--dr-nlb), from its changes (DNS.jsonl).
- leader_changes: promotions in the window, from each member's role as its Patroni
  said it every half second (ROLES.jsonl): a member seen as primary after a known other
  role. A member that does not answer keeps its last known role.
- split_brain_writes: writes sent to the cut-off leader's host after the cut, acknowledged,
  and not in the final table: acknowledged by a server that was no longer the leader.
  (Writes its dob-api acknowledged through the new leader are in the final table.)
  In region_loss: writes acknowledged by eu-west-1 after it came back (by the writers
  sent straight to its hosts, or through DNS to its NLB): after the takeover only the
  DR region may acknowledge a write.

patroni_upgrade (every member's Patroni from Debian's 3.0.2 to 3.3, then to the pinned
release, in place under load with both clusters paused, then failsafe mode set) requires
every member on the pinned release, failsafe mode in both clusters' configuration, the
same leader before and after, and acked_lost 0.

The in-region scenarios (patroni_upgrade, rolling_deploy, switchover, az_loss,
rejoin_after_az_loss, partition) also require the DR receipt state to be unchanged (attached,
the same sequence number as at the previous scenario's end): eu-west-1 never went on
without the DR region's receipt; and dns_answers_dr_s = 0: DNS never sent the clients
to the read-only DR region.

In dr_detach (the DR region cut off from eu-west-1 for 60 s, no takeover) and
fence_store_outage (every fence bucket cut off from eu-west-1 for 60 s), acked_lost
counts the scenario's acknowledged writes missing from the DR region's table at the end.
dr_detach also requires write_unavailable_s <= 15, the receipt state `detached` during
the cut and `attached` again afterwards; fence_store_outage requires writes to resume
within 10 s of the buckets' return.

In region_split (eu-west-1 cut from the DR region and its bucket, keeping its own, the
witness's and its clients; the takeover refused, then run with --accept-data-loss):
acked_lost counts acknowledged writes missing from the promoted DR region *outside* the
window the refused takeover reported (from the detach to the promotion); those inside
it are lost_in_window, the loss the operator accepted. split_brain_writes: eu-west-1's
acknowledgements (through DNS or from the writers inside it) after the promotion began.
It requires exit 7 then 0, write_unavailable_s <= 120.

In takeover_in_flight (eu-west-1's leader cut from its synchronous standby and the DR
region, writers inside eu-west-1 waiting on it, the takeover right away): acked_lost
counts acknowledged writes, through DNS or inside, missing from the promoted DR region;
split_brain_writes, eu-west-1's acknowledgements after the promotion began. The inside
writers' other outcomes (503, their own 60 s timeout) are listed.

Every scenario reports outcome_unknown: writes answered 503 because they committed but
could not be confirmed (the DR receipt timed out, or the lease ran out after COMMIT).

failback runs twice (after takeover_in_flight and after region_split; `after` says which).
In failback (eu-west-1 follows, takes the writes back, the DR region follows):
acked_lost counts the writes acknowledged through DNS meanwhile that eu-west-1's
leader lacks at the end; split_brain_writes, the DR region's acknowledgements after
eu-west-1's promotion began. It requires every step to exit 0, the takeover to have
caught up with the DR region, and the DR receipt attached at the end.

region_loss also runs writers inside eu-west-1 straight at its hosts: their
acknowledged writes count in acked_lost (missing in the DR region) and in
split_brain_writes (after the promotion began), apart from the DNS clients' numbers.

In pitr: acked_lost counts writes acknowledged before the recorded time of the bad
DELETE that are not in `users` after dob-restore --to-time (every writer's, the whole
run), plus writes acknowledged after it that are in neither `users` nor the database the
recovery replaced (kept): nothing may be silently lost. rto_s is dob-restore's own time
to a verified recovery swapped in. Every row of `users` before the scenario counts as
acknowledged before the DELETE. pitr_after_takeover is the same in the DR region after
region_loss's takeover, from the DR region's own repository: its rows before are DR.tsv's,
and the recovery's base backup must be the takeover's first full backup or a later one.

FINAL.tsv is eu-west-1's `users` before pitr; PITR.tsv after it, KEPT.tsv the replaced
database's; DR.tsv the DR region's at the end; SPLIT.tsv the DR region's right after
region_split's takeover. takeover_in_flight and failback name their own tables (the DR
region's after the takeover, eu-west-1's leader's after failing back) in their events.
"""

import argparse
import json
import os
import sys

import timeline


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# How the "outcome unknown" answers start (src/api/http.rs): the load client keeps only
# the first 120 bytes of an answer.
UNKNOWN = ("the write was committed in this region", "the write may have been committed")


def old_region(takeover):
    """What a takeover's report says it did to the old region through its EC2 API:
    (isolated, a sentence for the detail)."""
    old = (takeover or {}).get("old_region") or {}
    text = (
        f"old region {old.get('region')}: {old.get('state')}, {len(old.get('subnets') or [])} subnet(s) "
        f"moved to {old.get('isolation_acl') or old.get('deny_acl')}, {len(old.get('instances_stopped') or [])} host(s) stopped"
    )
    if old.get("error"):
        text += f" ({old['error'][:120]})"
    if (takeover or {}).get("old_region_unfenced"):
        text += ", promoted with --old-region-unfenced"
    return old.get("state") == "isolated", text


def seconds_answering(dns_events, answer, start, end):
    """Seconds within [start, end] in which the DNS stand-in's answer was `answer`;
    `dns_events` are its changes, {"t", "answer"}, in time order."""
    total = 0.0
    current, since = None, start
    for event in dns_events:
        if event["t"] > end:
            break
        if event["t"] > start:
            if current == answer:
                total += event["t"] - since
            since = event["t"]
        current = event["answer"]
    if current == answer:
        total += end - since
    return round(max(total, 0.0), 2)


def leader_changes(role_events, start, end):
    """Promotions within (start, end]: a member whose last known role was not primary
    is seen as primary. A member that stops answering ("unknown": stopped, stalled, cut
    off) keeps its last known role, so a stall alone is no change. A demotion and
    re-promotion of the same member counts."""
    known = {}
    changes = 0
    for event in role_events:
        if event["t"] > end:
            break
        role = event["role"]
        if role == "unknown":
            continue
        before = known.get(event["member"])
        if event["t"] > start and role == "primary" and before is not None and before != "primary":
            changes += 1
        known[event["member"]] = role
    return changes


def receipt_state(record):
    """The DR receipt state in force, as the drill's read of it says (`in_force`,
    drill.sh's detach_record)."""
    return (record or {}).get("in_force")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", required=True)
    parser.add_argument("--load", required=True)
    parser.add_argument("--users", required=True)
    parser.add_argument("--dr-users", required=True)
    parser.add_argument("--pitr-users", required=True)
    parser.add_argument("--pitr-kept", required=True)
    parser.add_argument("--split-dr-users", required=True)
    parser.add_argument("--west-nlb", required=True)
    parser.add_argument("--dr-nlb", required=True)
    parser.add_argument("--dns-events", required=True, help="the DNS stand-in's changes (dns.py)")
    parser.add_argument("--roles", required=True, help="each member's role over time (roles.py)")
    parser.add_argument("--ttl", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--html", help="also write the timelines page here (timeline.py)")
    args = parser.parse_args()

    events = read_jsonl(args.events)
    dns_events = read_jsonl(args.dns_events)
    role_events = read_jsonl(args.roles)

    def table(path):
        rows = {}
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    user, date = line.rstrip("\n").split("\t")
                    rows[user] = date
        return rows

    final = table(args.users)
    dr_final = table(args.dr_users)
    main_acked = read_jsonl(os.path.join(args.load, "main.acked.jsonl"))
    main_failed = read_jsonl(os.path.join(args.load, "main.failed.jsonl"))
    inaz_acked = read_jsonl(os.path.join(args.load, "inaz.acked.jsonl"))

    def lost(acks):
        return [a for a in acks if final.get(a["user"]) != a["date"]]

    all_lost = lost(main_acked) + lost(inaz_acked)
    # The DR receipt state's sequence number as of the previous event (0: --fence-init's).
    detach_seq = {"last": 0}

    # Which load (clients that follow DNS) each scenario ran under.
    load_of = {
        "patroni_upgrade": "main", "rolling_deploy": "main", "switchover": "main", "az_loss": "main",
        "rejoin_after_az_loss": "main", "partition": "main", "rejoin": "main",
        "pitr": "pitr", "dr_detach": "detach", "fence_store_outage": "fence",
        "region_split": "split", "takeover_in_flight": "flight", "region_loss": "region",
        "pitr_after_takeover": "pitrdr",
    }
    every_failure = [
        f
        for entry in sorted(os.listdir(args.load))
        if entry.endswith(".failed.jsonl")
        for f in read_jsonl(os.path.join(args.load, entry))
    ]

    def load(name, kind="acked"):
        return read_jsonl(os.path.join(args.load, f"{name}.{kind}.jsonl"))

    def rfc3339(text):
        """Seconds since the epoch of an RFC 3339 time with up to nanoseconds."""
        from datetime import datetime
        head, _, frac = text.rstrip("Z").partition(".")
        base = datetime.fromisoformat(head + "+00:00").timestamp()
        return base + (float("0." + frac) if frac else 0.0)

    def write_unavailable_s(load, start, end):
        """The longest stretch from `start` to `end` (or the load's last request, if
        earlier) in which the load had no write acknowledged."""
        acked = read_jsonl(os.path.join(args.load, f"{load}.acked.jsonl"))
        failed = read_jsonl(os.path.join(args.load, f"{load}.failed.jsonl"))
        sent = [a["t"] for a in acked] + [f["t"] for f in failed]
        if not sent:
            return None
        end = min(end, max(sent))
        times = sorted(a["acked_at"] for a in acked if start <= a["acked_at"] <= end)
        edges = [start] + times + [end]
        return round(max(b - a for a, b in zip(edges, edges[1:])), 2) if end > start else 0.0
    def pitr_outcome(result, event, earlier_acks, earlier_table, after, kept, load_name):
        """A recovery to the time of a bad DELETE: every write acknowledged before it
        (`earlier_acks`, the rows of `earlier_table` and the load's own) is back, every
        later one is in the recovered database or in the kept one."""
        acked = read_jsonl(os.path.join(args.load, f"{load_name}.acked.jsonl"))
        target = event["fault"]
        before = [a for a in earlier_acks + acked if a["acked_at"] < target]
        before += [{"user": u, "date": d} for u, d in earlier_table.items()]
        later = [a for a in acked if a["acked_at"] >= target]
        lost_before = [a for a in before if after.get(a["user"]) != a["date"]]
        lost_later = [
            a for a in later if after.get(a["user"]) != a["date"] and kept.get(a["user"]) != a["date"]
        ]
        rewound = [a for a in later if after.get(a["user"]) != a["date"]]
        report_pitr = (event.get("result") or {}).get("pitr") or {}
        result["acked_lost"] = len(lost_before) + len(lost_later)
        result["failed_requests"] = len(
            [f for f in read_jsonl(os.path.join(args.load, f"{load_name}.failed.jsonl")) if f["t"] >= target]
        )
        result["rto_s"] = round(report_pitr["rto_seconds"], 2) if "rto_seconds" in report_pitr else None
        result["ok"] = (
            event["restore_exit"] == 0
            and event["verify_exit"] == 0
            and bool(before)
            and not lost_before
            and not lost_later
        )
        result["detail"] = (
            f"DELETE FROM users after {event['target']}; dob-restore --to-time exited {event['restore_exit']} "
            f"(base backup {report_pitr.get('base_backup')}, timeline {report_pitr.get('timeline')}, "
            f"{report_pitr.get('rows_checked')} rows checked, {report_pitr.get('stopped_at')}); "
            f"pgbackrest verify exited {event['verify_exit']}; {len(before)} writes acknowledged before the "
            f"DELETE, {len(lost_before)} missing after the recovery; {len(later)} acknowledged after it, "
            f"{len(rewound)} rewound into {report_pitr.get('previous_database')}, {len(lost_later)} in neither; "
            f"{len(after)} users after the recovery"
        )

    def dr_timings(result, dns_acks, start, promoted):
        """rto_s and takeover_to_first_write_s of a takeover: the first write the DNS
        clients had acknowledged by the DR region, sent after the fault. Returns when
        each of those was acknowledged."""
        dr_acks = [a["acked_at"] for a in dns_acks if a.get("via") != args.west_nlb and a["t"] >= start]
        result["rto_s"] = round(min(dr_acks) - start, 2) if dr_acks else None
        result["takeover_to_first_write_s"] = round(min(dr_acks) - promoted, 2) if dr_acks else None
        return dr_acks

    scenarios = []
    windows = []
    previous_end = main_acked[0]["t"] if main_acked else 0.0
    for event in events:
        name = event["scenario"]
        # A scenario's window runs from its fault (or the previous scenario's end) to its end.
        start = event.get("fault", previous_end)
        end = event["end"]
        previous_end = end
        in_window = [a for a in main_acked if start <= a["acked_at"] <= end]
        failed = [f for f in main_failed if start <= f["t"] <= end]
        after = [a["acked_at"] for a in main_acked if a["t"] >= start]
        # What the failures were, most common first: a status and the error's first
        # words, or the client's exception.
        kinds = {}
        for f in failed:
            kind = f"{f['outcome']} {(f.get('reason') or '')[:60]}".strip()
            kinds[kind] = kinds.get(kind, 0) + 1
        result = {
            "failure_kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:5]),
            "name": name,
            "ok": True,
            "rto_s": None,
            "acked_lost": len(lost(in_window)),
            "failed_requests": len(failed),
            "split_brain_writes": 0,
            "detail": "",
        }
        if name == "patroni_upgrade":
            versions = event.get("versions") or {}
            upgraded = bool(versions) and all(v == event["want"] for v in versions.values())
            kept = event["leader_before"] == event["leader_after"]
            result["ok"] = upgraded and kept and event.get("failsafe") is True and result["acked_lost"] == 0
            result["detail"] = (
                f"Patroni {event['from']} -> {event['step']} -> {event['want']} in place, both clusters paused; "
                f"failsafe mode {'on' if event.get('failsafe') else 'NOT on'}; "
                f"members now {versions}; leader {event['leader_before']} -> {event['leader_after'] or 'none'}; "
                f"{len(in_window)} writes acknowledged meanwhile"
            )
        elif name == "rolling_deploy":
            # A write the client gave up on (its 2 s timeout) that committed with its date
            # was slow, not dropped: on this machine a restartpoint on the synchronous
            # standby can hold a commit that long. Any other failure is the deploy's.
            slow = [f for f in failed if f["outcome"] == "TimeoutError" and final.get(f["user"]) == f.get("date")]
            dropped = [f for f in failed if f not in slow]
            result["ok"] = not dropped and result["acked_lost"] == 0
            result["detail"] = (
                f"dob-api restarted on every host; {len(in_window)} writes acknowledged meanwhile; "
                f"{len(dropped)} failed, {len(slow)} answered after the client's timeout but committed"
            )
        elif name == "switchover":
            result["rto_s"] = round(min(after) - start, 2) if after else None
            result["ok"] = (
                event["exit"] == 0
                and event["to"] not in ("", event["from"])
                and result["acked_lost"] == 0
            )
            result["detail"] = (
                f"dob-promote --switchover exited {event['exit']}; leader {event['from']} -> {event['to'] or 'none'}"
            )
        elif name == "az_loss":
            result["rto_s"] = round(min(after) - start, 2) if after else None
            result["ok"] = result["rto_s"] is not None and result["rto_s"] < 30 and result["acked_lost"] == 0
            result["detail"] = f"leader {event['victim']} killed; {len(in_window)} writes acknowledged in the window"
            if event.get("dr_back") is not None:
                result["dr_reconnect_s"] = round(event["dr_back"] - event["promoted"], 2)
                result["detail"] += (
                    f"; the DR region streamed from the new leader {result['dr_reconnect_s']} s after "
                    "it was seen leading"
                )
        elif name == "partition":
            cut_acks = [a for a in inaz_acked if a["t"] >= start]
            demoted = event.get("demoted")
            split = [a for a in cut_acks if final.get(a["user"]) != a["date"]]
            result["split_brain_writes"] = len(split)
            result["rto_s"] = round(min(after) - start, 2) if after else None
            demote_s = round(demoted - start, 2) if demoted is not None else None
            result["ok"] = (
                demote_s is not None
                and demote_s <= args.ttl
                and not split
                and result["acked_lost"] == 0
            )
            result["detail"] = (
                f"leader {event['victim']} cut off; read-only after {demote_s} s (TTL {args.ttl:g} s); "
                f"{len(cut_acks)} writes sent to it from inside its AZ after the cut were acknowledged, "
                f"{len(split)} of them lost"
            )
        elif name == "rejoin_after_az_loss":
            result["ok"] = result["acked_lost"] == 0
            result["detail"] = f"{event['node']} rejoined as a replica"
        elif name == "rejoin":
            sums = event["checksums"]
            equal = len(set(sums.values())) == 1
            result["acked_lost"] = len(all_lost)
            result["ok"] = equal and not all_lost
            result["detail"] = (
                f"{event['node']} rejoined; users checksums {'equal' if equal else 'DIFFER'}: "
                + ", ".join(f"{k}={v}" for k, v in sorted(sums.items()))
                + f"; {len(main_acked) + len(inaz_acked)} acknowledged writes in the whole run, {len(all_lost)} missing"
            )
        elif name in ("dr_detach", "fence_store_outage"):
            its_load = load_of[name]
            acked = load(its_load)
            failed_here = load(its_load, "failed")
            # The DR region's table at the end: it holds everything eu-west-1 shipped.
            missing = [a for a in acked if dr_final.get(a["user"]) != a["date"]]
            result["acked_lost"] = len(missing)
            result["failed_requests"] = len([f for f in failed_here if f["t"] >= start])
            gap = write_unavailable_s(its_load, start, end)
            result["write_unavailable_s"] = gap
            after = [a["acked_at"] for a in acked if a["t"] >= start]
            result["rto_s"] = round(min(after) - start, 2) if after else None
            if name == "dr_detach":
                before = event.get("detach_before") or {}
                during = event.get("detach_during") or {}
                after_heal = event.get("detach_after") or {}
                result["ok"] = (
                    not missing
                    and before.get("state") == "attached"
                    and during.get("seq", -1) > before.get("seq", 0)
                    and gap is not None
                    and gap <= 15
                    and during.get("state") == "detached"
                    and event.get("reattached") is not None
                    and after_heal.get("state") == "attached"
                )
                result["detail"] = (
                    f"DR receipt state 30 s into the cut: {during.get('state')} (WAL position confirmed "
                    f"before it: {during.get('confirmed_lsn')}); after the DR region came back: "
                    f"{after_heal.get('state')}"
                    + (
                        f" {event['reattached'] - event['healed']:.1f} s later"
                        if event.get("reattached") is not None
                        else ""
                    )
                    + f"; {len(acked)} writes acknowledged, {len(missing)} missing in the DR region at the end; "
                    f"longest stretch without an acknowledged write {gap} s (at most 15)"
                )
            else:
                resumed = [a["acked_at"] for a in acked if a["acked_at"] >= event["returned"]]
                resume_s = round(min(resumed) - event["returned"], 2) if resumed else None
                result["resume_s"] = resume_s
                result["ok"] = not missing and resume_s is not None and resume_s <= 10
                result["detail"] = (
                    f"every fence bucket cut off from eu-west-1 for {event['returned'] - start:.0f} s; "
                    f"writes resumed {resume_s} s after the buckets answered again (at most 10); "
                    f"{len(acked)} writes acknowledged, {len(missing)} missing in the DR region at the end"
                )
        elif name == "region_split":
            split_dr = table(args.split_dr_users)
            inside = load("splitina") + load("splitinb")
            dns_acks = load("split")
            acks = [a for a in dns_acks + inside if a["t"] >= start]
            lost_split = [a for a in acks if split_dr.get(a["user"]) != a["date"]]
            refused = event.get("refused") or {}
            takeover = event.get("takeover") or {}
            window = refused.get("loss_window") or {}
            # The refusal's report names the window: from the detach's time to the
            # promotion (the old region stopped within a lease of the first, refused, run).
            since = rfc3339(window["since"]) if window.get("since") else None
            promoted_from = event["accepted_at"] + takeover.get("lease_wait_s", 0)
            outside = [a for a in lost_split if since is None or not (since <= a["acked_at"] <= promoted_from)]
            west_acks = inside + [a for a in dns_acks if a.get("via") == args.west_nlb]
            split = [a for a in west_acks if a["acked_at"] >= promoted_from]
            gap = write_unavailable_s("split", start, end)
            result["write_unavailable_s"] = gap
            result["acked_lost"] = len(outside)
            result["lost_in_window"] = len(lost_split) - len(outside)
            result["split_brain_writes"] = len(split)
            result["failed_requests"] = len([f for f in load("split", "failed") if f["t"] >= start])
            dr_acks = dr_timings(result, dns_acks, start, event["promoted"])
            result["ok"] = (
                event["refused_exit"] == 7
                and since is not None
                and event["accept_exit"] == 0
                and takeover.get("accepted_data_loss") is True
                and old_region(takeover)[0]
                and not outside
                and not split
                and gap is not None
                and gap <= 120
            )
            result["detail"] = (
                f"detached {event['detached'] - start:.1f} s after the cut; dob-promote --takeover exited "
                f"{event['refused_exit']} ({window.get('why')}, writes after {window.get('after_lsn')} since "
                f"{window.get('since')}); with --accept-data-loss exited {event['accept_exit']} (epoch "
                f"{takeover.get('epoch')}, lease wait {takeover.get('lease_wait_s', 0):.1f} s); DNS answered the DR "
                f"region {event['dns_switched'] - start:.1f} s after the cut; {len(acks)} writes acknowledged "
                f"({len(inside)} by writers inside eu-west-1), {len(lost_split)} of them not in the promoted DR "
                f"region, {len(outside)} outside the reported window; {len(split)} acknowledged by eu-west-1 "
                f"after the promotion; {old_region(takeover)[1]}"
            )
        elif name == "takeover_in_flight":
            flight_dr = table(event["dr_users"])
            inside = load("flightin1") + load("flightin2") + load("flightin3")
            inside_failed = load("flightin1", "failed") + load("flightin2", "failed") + load("flightin3", "failed")
            dns_acks = load("flight")
            acks = [a for a in dns_acks + inside if a["t"] >= start]
            lost_flight = [a for a in acks if flight_dr.get(a["user"]) != a["date"]]
            takeover = event.get("takeover") or {}
            promoted_from = event["promoted"] - takeover.get("promote_s", 0)
            west_acks = [a for a in inside if a["t"] >= start] + [
                a for a in dns_acks if a.get("via") == args.west_nlb and a["t"] >= start
            ]
            split = [a for a in west_acks if a["acked_at"] >= promoted_from]
            waited = [f for f in inside_failed if f["t"] >= start]
            result["acked_lost"] = len(lost_flight)
            result["split_brain_writes"] = len(split)
            result["failed_requests"] = len([f for f in load("flight", "failed") if f["t"] >= start])
            dr_acks = dr_timings(result, dns_acks, start, event["promoted"])
            outcomes = {}
            for f in waited:
                kind = str(f["outcome"])
                outcomes[kind] = outcomes.get(kind, 0) + 1
            result["inside_outcomes"] = outcomes
            result["ok"] = (
                event["takeover_exit"] == 0
                and old_region(takeover)[0]
                and not lost_flight
                and not split
                and bool(dr_acks)
            )
            result["detail"] = (
                f"leader {event['leader']} cut off from its synchronous standby and the DR region; "
                f"dob-promote --takeover exited {event['takeover_exit']} (epoch {takeover.get('epoch')}, lease wait "
                f"{takeover.get('lease_wait_s', 0):.1f} s, DR receipt {takeover.get('dr_receipt')}); DNS answered "
                f"the DR region {event['dns_switched'] - start:.1f} s after the cut; the writers inside eu-west-1: "
                f"{len([a for a in inside if a['t'] >= start])} acknowledged, unanswered or refused {outcomes}; "
                f"{len(acks)} writes acknowledged in all, {len(lost_flight)} of them not in the promoted DR region; "
                f"{len(split)} acknowledged by eu-west-1 after the promotion; {old_region(takeover)[1]}"
            )
        elif name == "failback":
            home_table = table(event["users"])
            acks = [a for a in load(event["load"]) if a["t"] >= start]
            lost_back = [a for a in acks if home_table.get(a["user"]) != a["date"]]
            failback = event.get("failback") or {}
            catch_up = failback.get("catch_up") or {}
            promoted_from = event["failback_at"] + failback.get("lease_wait_s", 0)
            # The DR region must not acknowledge a write once eu-west-1 may write.
            split = [a for a in acks if a.get("via") != args.west_nlb and a["acked_at"] >= promoted_from]
            result["acked_lost"] = len(lost_back)
            result["split_brain_writes"] = len(split)
            result["failed_requests"] = len([f for f in load(event["load"], "failed") if f["t"] >= start])
            home_acks = [a["acked_at"] for a in acks if a.get("via") == args.west_nlb and a["acked_at"] >= promoted_from]
            result["takeover_to_first_write_s"] = (
                round(min(home_acks) - promoted_from, 2) if home_acks else None
            )
            detach_end = event.get("detach_end") or {}
            end_state = receipt_state(detach_end)
            result["ok"] = (
                event["follow_west_exit"] == 0
                and event["failback_exit"] == 0
                and event["follow_dr_exit"] == 0
                and event.get("lift_west_exit", 0) == 0
                and event.get("lift_dr_exit", 0) == 0
                and old_region(failback)[0]
                and catch_up.get("state") == "caught-up"
                and not lost_back
                and not split
                and bool(home_acks)
                and end_state == "attached"
            )
            follow_west = event.get("follow_west") or {}
            result["detail"] = (
                f"after {event['after']}: dob-promote --follow in eu-west-1 exited {event['follow_west_exit']} ({follow_west.get('leader')} "
                f"was {follow_west.get('role_before')} on timeline {follow_west.get('timeline_before')}, following after "
                f"{follow_west.get('follow_s', 0):.1f} s); --takeover there exited {event['failback_exit']} (epoch "
                f"{failback.get('epoch')}, lease wait {failback.get('lease_wait_s', 0):.1f} s, caught up with the DR "
                f"region: {catch_up.get('state')} at {catch_up.get('lsn')} in {failback.get('catch_up_s', 0):.1f} s); "
                f"the DR region's --follow exited {event['follow_dr_exit']}; writes home (DNS) "
                f"{event['home'] - start:.1f} s after the start; {len(acks)} writes acknowledged, {len(lost_back)} "
                f"missing at home; DR receipt state at the end: {end_state}; the takeover's {old_region(failback)[1]}; "
                f"--lift-isolation: in the DR region exited {event.get('lift_west_exit')} "
                f"({len((event.get('lift_west') or {}).get('subnets') or [])} subnet(s) of eu-west-1 back), "
                f"in eu-west-1 exited {event.get('lift_dr_exit')} "
                f"({len((event.get('lift_dr') or {}).get('subnets') or [])} subnet(s) of the DR region back)"
            )
        elif name == "region_loss":
            region_acked = read_jsonl(os.path.join(args.load, "region.acked.jsonl"))
            region_failed = read_jsonl(os.path.join(args.load, "region.failed.jsonl"))
            back_acked = read_jsonl(os.path.join(args.load, "backa.acked.jsonl")) + read_jsonl(
                os.path.join(args.load, "backb.acked.jsonl")
            )
            back_sent = len(back_acked) + len(read_jsonl(os.path.join(args.load, "backa.failed.jsonl"))) + len(
                read_jsonl(os.path.join(args.load, "backb.failed.jsonl"))
            )
            after_fault = [a for a in region_acked if a["t"] >= start]
            before_fault = [a for a in region_acked if a["t"] < start]
            lost_after = [a for a in after_fault if dr_final.get(a["user"]) != a["date"]]
            # Asynchronous cross-region replication: what eu-west-1 acknowledged just
            # before the cut and had not yet shipped is the cross-region RPO.
            rpo_lost = [a for a in before_fault if dr_final.get(a["user"]) != a["date"]]
            returned = event["returned"]
            west_after_return = back_acked + [
                a for a in region_acked if a["t"] >= returned and a.get("via") == args.west_nlb
            ]
            first_dr = [a["acked_at"] for a in after_fault]
            takeover = event.get("takeover") or {}
            # Writers left inside eu-west-1: counted apart from the clients that follow DNS.
            inside = [a for a in load("regionina") + load("regioninb") if a["t"] >= start]
            inside_sent = len(inside) + len(
                [f for f in load("regionina", "failed") + load("regioninb", "failed") if f["t"] >= start]
            )
            inside_lost = [a for a in inside if dr_final.get(a["user"]) != a["date"]]
            promoted_from = event.get("takeover_at", event["dns_switched"]) + takeover.get("lease_wait_s", 0)
            inside_split = [a for a in inside if a["acked_at"] >= promoted_from]
            result["rto_s"] = round(min(first_dr) - start, 2) if first_dr else None
            result["acked_lost"] = len(lost_after) + len(inside_lost)
            result["failed_requests"] = len([f for f in region_failed if f["t"] >= start])
            result["split_brain_writes"] = len(west_after_return) + len(inside_split)
            result["inside_acked"] = len(inside)
            if first_dr and event.get("takeover_at") is not None:
                result["takeover_to_first_write_s"] = round(
                    min(first_dr) - (event["takeover_at"] + takeover.get("lease_wait_s", 0)), 2
                )
            result["writes_after_return"] = len(west_after_return)
            result["rpo_writes"] = len(rpo_lost)
            again = event.get("again") or {}
            west_bucket_fenced = any(b.endswith("@eu-west-1") for b in again.get("fenced_buckets", []))
            old_isolated, old_text = old_region(takeover)
            result["ok"] = (
                event["takeover_exit"] == 0
                and event.get("again_exit") == 0
                and west_bucket_fenced
                and not old_isolated
                and takeover.get("old_region_unfenced") is True
                and result["rto_s"] is not None
                and not lost_after
                and not west_after_return
                and back_sent > 0
                and inside_sent > 0
                and not inside_lost
                and not inside_split
                and (result.get("write_unavailable_s") or write_unavailable_s("region", start, end) or 0) <= 90
            )
            result["detail"] = (
                f"DR region {event.get('region_delay_ms', 0)} ms away each way; "
                f"DNS answered the DR region {event['dns_switched'] - start:.1f} s after the cut; "
                f"dob-promote --takeover exited {event['takeover_exit']} "
                f"(epoch {takeover.get('epoch')}, lease wait {takeover.get('lease_wait_s', 0):.1f} s, "
                f"promotion {takeover.get('promote_s', 0):.1f} s, unreachable buckets {takeover.get('unreachable_buckets')}; "
                f"{old_text}); "
                f"{len(after_fault)} writes acknowledged through DNS after the cut, {len(lost_after)} missing in the DR region; "
                f"after eu-west-1 came back (leader {event['west_leader']}): {back_sent} writes sent straight to its hosts, "
                f"{len(west_after_return)} acknowledged there; the takeover run again then: exit "
                f"{event.get('again_exit')}, record in {again.get('fenced_buckets')}; cross-region RPO: "
                f"{len(rpo_lost)} writes acknowledged before the cut did not reach the DR region; "
                f"writers inside eu-west-1: {inside_sent} sent after the cut, {len(inside)} acknowledged, "
                f"{len(inside_lost)} of them missing in the DR region"
            )
        elif name == "pitr":
            pitr_outcome(result, event, main_acked + inaz_acked, final,
                         table(args.pitr_users), table(args.pitr_kept), "pitr")
        elif name == "pitr_after_takeover":
            # The DR region's users when region_loss ended (every write acknowledged
            # through DNS is in them: region_loss checks that) were all committed before
            # the DELETE; the recovery starts from the takeover's first full backup into
            # the DR region's own repository, so it must be that backup or a later one.
            first = (event.get("takeover") or {}).get("base_backup") or {}
            pitr_outcome(result, event, [], dr_final, table(event["users"]), table(event["kept"]), "pitrdr")
            base = ((event.get("result") or {}).get("pitr") or {}).get("base_backup") or ""
            from_own = bool(first.get("label")) and base >= first["label"]
            result["ok"] = result["ok"] and from_own
            result["detail"] = (
                f"the takeover's first full backup {first.get('label')} (stopped {first.get('stopped')}); "
                + result["detail"]
            )
        elif name == "backup_after_failover":
            leaders = [b for b in event["backups"].split() if not b.endswith("=skipped")]
            result["ok"] = (
                len(leaders) == 1
                and event["manifest_timeline"] == event["live_timeline"]
                and event["drill_exit"] == 0
                and event["old_backup_drill_exit"] == 4
            )
            result["detail"] = (
                f"backup unit: {event['backups']}; manifest timeline {event['manifest_timeline']}, "
                f"live {event['live_timeline']}; restore drill exit {event['drill_exit']}; "
                f"the backup from before the failovers: drill exit {event['old_backup_drill_exit']} "
                "(4 = refused, older timeline)"
            )
        # In-region scenarios: the DR region must never have been detached (every 204
        # waited for its receipt), so the record is the one the previous event saw.
        if "detach" in event:
            detach = event["detach"] or {}
            attached = detach.get("state") == "attached" and detach.get("seq") == detach_seq["last"]
            detach_seq["last"] = detach.get("seq", -1)
            result["dr_never_detached"] = attached
            result["ok"] = result["ok"] and attached
            result["detail"] += (
                "; the DR region stayed attached"
                if attached
                else f"; the DR receipt state changed: {json.dumps(event['detach'])}"
            )
        load_name = event.get("load") or load_of.get(name)
        if load_name and "write_unavailable_s" not in result:
            result["write_unavailable_s"] = write_unavailable_s(load_name, start, end)
        # Writes answered "outcome unknown" (committed, not confirmed: the DR receipt
        # timed out or the lease ran out after COMMIT), by every client in the window.
        result["outcome_unknown"] = len(
            [f for f in every_failure if start <= f["t"] <= end and any(u in (f.get("reason") or "") for u in UNKNOWN)]
        )
        windows.append({"start": start, "end": end, "event": event})
        result["dns_answers_dr_s"] = seconds_answering(dns_events, args.dr_nlb, start, end)
        result["leader_changes"] = leader_changes(role_events, start, end)
        if "detach" in event and result["dns_answers_dr_s"] > 0:
            # An in-region fault must never send clients to the read-only DR region.
            result["ok"] = False
            result["detail"] += f"; DNS answered the DR region for {result['dns_answers_dr_s']} s"
        scenarios.append(result)

    report = {"scenarios": scenarios, "ok": all(s["ok"] for s in scenarios)}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    if args.html:
        every_ack = [
            a["acked_at"]
            for entry in sorted(os.listdir(args.load))
            if entry.endswith(".acked.jsonl")
            for a in read_jsonl(os.path.join(args.load, entry))
        ]
        members = sorted({e["member"] for e in role_events})
        regions = {args.west_nlb: "eu-west-1", args.dr_nlb: "eu-central-1"}
        rows = [{**s, **w} for s, w in zip(scenarios, windows)]
        with open(args.html, "w") as f:
            f.write(timeline.page(rows, every_ack, [x["t"] for x in every_failure], role_events,
                                  dns_events, members, regions))
    print(
        f"{'scenario':<22} {'ok':<4} {'rto_s':>7} {'acked_lost':>10} {'failed':>7} {'split_brain':>11} "
        f"{'unavail_s':>9} {'dns_dr_s':>8} {'leaders':>7}"
    )
    for s in scenarios:
        rto = "-" if s["rto_s"] is None else f"{s['rto_s']:.2f}"
        gap = s.get("write_unavailable_s")
        gap = "-" if gap is None else f"{gap:.2f}"
        print(
            f"{s['name']:<22} {'yes' if s['ok'] else 'NO':<4} {rto:>7} {s['acked_lost']:>10} "
            f"{s['failed_requests']:>7} {s['split_brain_writes']:>11} {gap:>9} "
            f"{s['dns_answers_dr_s']:>8.1f} {s['leader_changes']:>7}"
        )
        print(f"    {s['detail']}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
