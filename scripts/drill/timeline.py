"""The drill's picture: report.html, one self-contained page (inline SVG, no script, no
fetch) with a timeline per scenario, drawn from what report.py already read:

- writes acknowledged (green, up) and failed (red, down) per second, every client;
- which member led, as its Patroni said (roles.py): a band per member, dark where it
  was primary, light where it answered as anything else, empty where it did not answer;
- what DNS answered (dns.py): eu-west-1 or the DR region;
- the fault window (from the fault to the heal, where the drill records one) shaded, and
  the scenario's moments (promotion, takeover, DNS switch...) as labelled lines.

Pure: `page` takes the data and returns the HTML text.
"""

import html
import math

WIDTH = 960
LEFT = 150
PLOT = WIDTH - LEFT - 20
ROW = 18
CHART = 90

# Moments an event may record (seconds since the epoch), and how to label them.
MOMENTS = {
    "demoted": "demoted",
    "promoted": "promoted",
    "dr_back": "DR streams",
    "detached": "detached",
    "refused_at": "takeover refused",
    "accepted_at": "takeover, data loss accepted",
    "takeover_at": "takeover",
    "dns_switched": "DNS to DR",
    "failback_at": "takeover home",
    "home": "writes home",
    "reattached": "re-attached",
    "restored": "restored",
}
# Where the drill records the end of its fault.
FAULT_END = ("healed", "returned")


def per_second(times, start, end):
    """Counts of `times` in each whole second from `start` to `end`."""
    bins = [0] * max(1, math.ceil(end - start))
    for t in times:
        if start <= t < end:
            bins[min(len(bins) - 1, int(t - start))] += 1
    return bins


def spans(changes, start, end):
    """[(from, to, value)] covering [start, end] from time-ordered (t, value) changes;
    the value before the first change is None."""
    out = []
    value, since = None, start
    for t, new in changes:
        if t > end:
            break
        if t > start:
            out.append((since, t, value))
            since = t
        value = new
    out.append((since, end, value))
    return [s for s in out if s[1] > s[0]]


def scenario_svg(scenario, acked, failed, role_events, dns_events, members, regions):
    """One scenario's timeline. `scenario` holds name, start, end and the drill's event;
    `regions` maps a DNS answer to its label."""
    start, end = scenario["start"], scenario["end"]
    span = max(end - start, 1.0)

    def x(t):
        return LEFT + (t - start) / span * PLOT

    ok_bins = per_second(acked, start, end)
    bad_bins = per_second(failed, start, end)
    top = max(max(ok_bins), max(bad_bins), 1)
    half = CHART / 2
    height = 20 + CHART + 10 + ROW * (len(members) + 1) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">'
    ]
    event = scenario["event"]
    fault = event.get("fault")
    fault_end = next((event[k] for k in FAULT_END if isinstance(event.get(k), (int, float))), None)
    if isinstance(fault, (int, float)) and fault_end is not None:
        parts.append(
            f'<rect x="{x(fault):.1f}" y="10" width="{max(x(fault_end) - x(fault), 1):.1f}" '
            f'height="{height - 30}" fill="#fde68a" opacity="0.5"><title>fault</title></rect>'
        )
    # Writes per second: acknowledged up, failed down, from the middle line.
    mid = 20 + half
    bar = PLOT / len(ok_bins)
    parts.append(f'<text x="4" y="{mid - half / 2}">acknowledged/s</text>')
    parts.append(f'<text x="4" y="{mid + half / 2}">failed/s</text>')
    parts.append(f'<text x="4" y="{mid + 4}" fill="#666">max {top}</text>')
    for i, (ok, bad) in enumerate(zip(ok_bins, bad_bins)):
        bx = LEFT + i * bar
        if ok:
            h = ok / top * (half - 2)
            parts.append(f'<rect x="{bx:.1f}" y="{mid - h:.1f}" width="{max(bar, 0.5):.1f}" height="{h:.1f}" fill="#16a34a"/>')
        if bad:
            h = bad / top * (half - 2)
            parts.append(f'<rect x="{bx:.1f}" y="{mid:.1f}" width="{max(bar, 0.5):.1f}" height="{h:.1f}" fill="#dc2626"/>')
    parts.append(f'<line x1="{LEFT}" y1="{mid}" x2="{LEFT + PLOT}" y2="{mid}" stroke="#999"/>')
    # Who led: one band per member.
    y = 20 + CHART + 10
    for member in members:
        changes = [(e["t"], e["role"]) for e in role_events if e["member"] == member]
        parts.append(f'<text x="4" y="{y + ROW - 6}">{html.escape(member)}</text>')
        for a, b, role in spans(changes, start, end):
            if role in (None, "unknown"):
                continue
            fill = "#1d4ed8" if role == "primary" else "#bfdbfe"
            parts.append(
                f'<rect x="{x(a):.1f}" y="{y + 2}" width="{max(x(b) - x(a), 0.5):.1f}" height="{ROW - 4}" '
                f'fill="{fill}"><title>{html.escape(member)}: {html.escape(role)}</title></rect>'
            )
        y += ROW
    # What DNS answered.
    parts.append(f'<text x="4" y="{y + ROW - 6}">DNS answers</text>')
    for a, b, answer in spans([(e["t"], e["answer"]) for e in dns_events], start, end):
        label = regions.get(answer, answer or "?")
        fill = "#d97706" if label != "eu-west-1" else "#6b7280"
        parts.append(
            f'<rect x="{x(a):.1f}" y="{y + 2}" width="{max(x(b) - x(a), 0.5):.1f}" height="{ROW - 4}" '
            f'fill="{fill}"><title>DNS: {html.escape(label)}</title></rect>'
        )
        if x(b) - x(a) > 60:
            parts.append(f'<text x="{x(a) + 3:.1f}" y="{y + ROW - 6}" fill="#fff">{html.escape(label)}</text>')
    y += ROW
    # The fault and the scenario's moments.
    marks = [("fault", fault)] if isinstance(fault, (int, float)) else []
    marks += [(label, event[k]) for k, label in MOMENTS.items() if isinstance(event.get(k), (int, float))]
    for i, (label, t) in enumerate(sorted(marks, key=lambda m: m[1])):
        if not start <= t <= end:
            continue
        parts.append(f'<line x1="{x(t):.1f}" y1="10" x2="{x(t):.1f}" y2="{y}" stroke="#111" stroke-dasharray="3,2"/>')
        parts.append(f'<text x="{x(t) + 2:.1f}" y="{y + 12 + (i % 2) * 11}">{html.escape(label)}</text>')
    parts.append(f'<text x="{LEFT}" y="{height - 2}" fill="#666">0 s</text>')
    parts.append(f'<text x="{LEFT + PLOT - 40}" y="{height - 2}" fill="#666">{span:.0f} s</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def page(scenarios, acked, failed, role_events, dns_events, members, regions):
    """The whole page. `scenarios`: report rows with start, end and event added."""
    body = []
    for s in scenarios:
        verdict = "ok" if s["ok"] else "NOT OK"
        figures = ", ".join(
            f"{k} {s[k]}"
            for k in ("rto_s", "write_unavailable_s", "acked_lost", "split_brain_writes", "failed_requests",
                      "outcome_unknown", "dns_answers_dr_s", "leader_changes")
            if s.get(k) is not None
        )
        body.append(f'<h2 id="{html.escape(s["name"])}">{html.escape(s["name"])}: {verdict}</h2>')
        body.append(f"<p>{html.escape(figures)}</p>")
        body.append(f'<p class="detail">{html.escape(s["detail"])}</p>')
        body.append(scenario_svg(s, acked, failed, role_events, dns_events, members, regions))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>dob drill report</title>"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:1em auto}"
        ".detail{color:#444;font-size:90%}h2{margin-top:2em}</style></head><body>"
        "<h1>dob drill report</h1>"
        "<p>Per scenario: writes acknowledged (green) and failed (red) per second by every load client; "
        "each member's Patroni role (dark: primary, light: another role, empty: no answer); what DNS "
        "answered (grey: eu-west-1, orange: the DR region); the fault window shaded.</p>"
        + "\n".join(body)
        + "</body></html>\n"
    )
