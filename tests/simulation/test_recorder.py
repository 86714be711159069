"""The recorder's rows survive the trip from an instance's process and merge in message order."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from vbgateway.simulation.recorder import RowRecorder

START = datetime(2026, 3, 1, tzinfo=UTC)


def _recorder(indexes: list[int]) -> RowRecorder:
    rec = RowRecorder(["T"], ["T / A"], ["vendorA", "vendorB"])
    for i in indexes:
        rec.add(i, i // 2, 0, 0, float(i), 10.0 + i, i % 3 == 0, False, False, i % 5 != 0, i % 2, False, 1, 1,
                100 + i, 20 + i, 1_000 * i, f"req_{i:020d}")
    return rec


def test_instances_rows_pickled_and_merged_come_out_in_message_order_with_their_own_values():
    whole = _recorder(list(range(12)))
    evens = pickle.loads(pickle.dumps(_recorder([0, 2, 4, 6, 8, 10])))
    odds = pickle.loads(pickle.dumps(_recorder([1, 3, 5, 7, 9, 11])))
    evens.extend(odds)
    merged = evens.frame(START)
    assert list(merged.message) == list(range(12))
    assert list(merged.request_id) == [f"req_{i:020d}" for i in range(12)]
    assert merged.equals(whole.frame(START))


def test_recorders_of_different_scenarios_refuse_to_merge():
    other = RowRecorder(["U"], ["U / A"], ["vendorA", "vendorB"])
    with pytest.raises(ValueError):
        _recorder([0]).extend(other)


def test_a_released_recorder_gives_the_same_frame_and_keeps_nothing():
    kept, released = _recorder(list(range(9))), _recorder(list(range(9)))
    assert released.frame(START, release=True).equals(kept.frame(START))
    assert len(released) == 0 and len(released.frame(START)) == 0
