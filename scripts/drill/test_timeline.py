#!/usr/bin/env python3
"""Unit tests of the drill's timelines page (python3 -m unittest, from
scripts/ci/check-drill.sh before the drill runs)."""

import unittest

from timeline import page, per_second, spans

WEST, DR = "10.0.0.1:8080", "10.0.0.1:8081"


class Bins(unittest.TestCase):
    def test_per_second_counts_each_second_of_the_window(self):
        self.assertEqual(per_second([0.1, 0.9, 1.5, 3.2, 9.0], 0.0, 4.0), [2, 1, 0, 1])

    def test_spans_cover_the_window_with_the_value_in_force(self):
        changes = [(0.0, "a"), (5.0, "b"), (20.0, "c")]
        self.assertEqual(spans(changes, 2.0, 10.0), [(2.0, 5.0, "a"), (5.0, 10.0, "b")])
        self.assertEqual(spans([], 2.0, 10.0), [(2.0, 10.0, None)])


class Page(unittest.TestCase):
    def test_one_self_contained_picture_per_scenario(self):
        scenarios = [
            {"name": "az_loss", "ok": True, "detail": "leader a <killed>", "rto_s": 12.5,
             "start": 100.0, "end": 160.0, "event": {"fault": 100.0, "promoted": 111.0}},
            {"name": "dr_detach", "ok": False, "detail": "", "start": 160.0, "end": 260.0,
             "event": {"fault": 170.0, "healed": 230.0}},
        ]
        roles = [{"t": 90.0, "member": "a", "role": "primary"}, {"t": 111.0, "member": "b", "role": "primary"}]
        dns = [{"t": 50.0, "answer": WEST}, {"t": 180.0, "answer": DR}]
        text = page(scenarios, [101.0, 150.0], [105.0], roles, dns, ["a", "b"],
                    {WEST: "eu-west-1", DR: "eu-central-1"})
        self.assertEqual(text.count("<svg"), 2)
        self.assertNotIn("<script", text)
        self.assertNotIn("http://", text.replace('xmlns="http://www.w3.org/2000/svg"', ""))
        self.assertIn("leader a &lt;killed&gt;", text)
        self.assertIn("promoted", text)
        self.assertIn("NOT OK", text)
        self.assertIn("DNS: eu-central-1", text)


if __name__ == "__main__":
    unittest.main()
