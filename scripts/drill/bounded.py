"""What keeps the drill's helper processes (load.py, dns.py, roles.py) bounded besides
their own --max-seconds: a stop on SIGTERM or SIGINT, checked between rounds, so the
drill's cleanup (or a person's Ctrl-C) ends them after the round in hand. Only standard
library."""

import signal


def stop_on_signals():
    """Installs the handlers; returns a function that says whether a stop was asked."""
    asked = []

    def stop(_signum, _frame):
        asked.append(True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return lambda: bool(asked)
