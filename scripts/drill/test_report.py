#!/usr/bin/env python3
"""Unit tests of the drill report's pure figures (python3 -m unittest, from
scripts/ci/check-drill.sh before the drill runs)."""

import unittest

from report import leader_changes, seconds_answering

WEST, DR = "10.0.0.1:8080", "10.0.0.1:8081"


class SecondsAnswering(unittest.TestCase):
    DNS = [{"t": 0.0, "answer": WEST}, {"t": 10.0, "answer": DR}, {"t": 20.0, "answer": WEST}]

    def test_counts_only_the_window(self):
        self.assertEqual(seconds_answering(self.DNS, DR, 5.0, 25.0), 10.0)
        self.assertEqual(seconds_answering(self.DNS, DR, 12.0, 15.0), 3.0)
        self.assertEqual(seconds_answering(self.DNS, WEST, 12.0, 15.0), 0.0)

    def test_an_answer_in_force_at_the_end_counts_to_the_end(self):
        self.assertEqual(seconds_answering(self.DNS[:2], DR, 0.0, 30.0), 20.0)

    def test_no_changes_is_no_time(self):
        self.assertEqual(seconds_answering([], DR, 0.0, 30.0), 0.0)


class LeaderChanges(unittest.TestCase):
    ROLES = [
        {"t": 0.0, "member": "a", "role": "primary"},
        {"t": 0.0, "member": "b", "role": "replica"},
        {"t": 5.0, "member": "a", "role": "unknown"},
        {"t": 6.0, "member": "b", "role": "primary"},
        {"t": 8.0, "member": "a", "role": "replica"},
        {"t": 9.0, "member": "a", "role": "primary"},
    ]

    def test_a_promotion_in_the_window_counts(self):
        self.assertEqual(leader_changes(self.ROLES, 1.0, 7.0), 1)
        self.assertEqual(leader_changes(self.ROLES, 1.0, 10.0), 2)

    def test_the_leader_at_the_start_is_no_change(self):
        self.assertEqual(leader_changes(self.ROLES, 0.0, 4.0), 0)

    def test_a_stall_alone_is_no_change(self):
        stall = [
            {"t": 0.0, "member": "a", "role": "primary"},
            {"t": 5.0, "member": "a", "role": "unknown"},
            {"t": 9.0, "member": "a", "role": "primary"},
        ]
        self.assertEqual(leader_changes(stall, 1.0, 10.0), 0)

    def test_a_demotion_and_repromotion_counts(self):
        flap = [
            {"t": 0.0, "member": "a", "role": "primary"},
            {"t": 5.0, "member": "a", "role": "replica"},
            {"t": 9.0, "member": "a", "role": "primary"},
        ]
        self.assertEqual(leader_changes(flap, 1.0, 10.0), 1)


if __name__ == "__main__":
    unittest.main()
