"""Batch tasks carry groups sized from the campaign's queue window (``tasks.enqueue``)."""

from __future__ import annotations

from tasks.enqueue import GROUP, MAX_GROUP, group_size, groups


def test_a_small_window_keeps_groups_of_eight_and_a_large_one_takes_up_to_thirty_two() -> None:
    assert group_size(16) == GROUP == 8
    assert group_size(30) == 8  # 1,200 requests/min: 30 batches queued
    assert group_size(150) == 18  # 6,000 requests/min
    assert group_size(512) == MAX_GROUP == 32  # no limit


def test_groups_keep_every_batch_in_order() -> None:
    assert groups(range(70), 32) == [list(range(32)), list(range(32, 64)), list(range(64, 70))]
