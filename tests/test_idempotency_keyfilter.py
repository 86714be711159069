"""The in-memory filter of stored idempotency keys: it may only ever say 'maybe' for a stored key.

A 'no' for a key DuckDB holds would bill a repeated request twice, so these
tests walk a key through every place it can be: pending, applied before the
filter was loaded, applied after, and stored by an earlier process.
"""

from __future__ import annotations

import numpy as np
from test_idempotency import HEALTHY, Healthy

from vbgateway import Gateway
from vbgateway.providers import VendorA, VendorB
from vbgateway.store.keyfilter import KeyFilter, key_hash


def test_the_filter_knows_every_key_added_or_loaded_and_merges_without_losing_any() -> None:
    loaded = np.array([key_hash("tnt_a", f"k{i}") for i in range(100)], dtype=np.int64)
    keys = KeyFilter(loaded)
    for i in range(KeyFilter._MERGE_AT + 10):  # forces a merge of the recent set into the sorted array
        keys.add("tnt_b", f"n{i}")
    assert all(keys.might_contain("tnt_a", f"k{i}") for i in range(100))
    assert all(keys.might_contain("tnt_b", f"n{i}") for i in range(KeyFilter._MERGE_AT + 10))
    assert not keys.might_contain("tnt_b", "k1")  # same key, other tenant
    assert sum(keys.might_contain("tnt_c", f"x{i}") for i in range(1000)) == 0


def test_the_hash_in_python_is_the_one_duckdb_computes(tmp_path) -> None:
    with Gateway.open(tmp_path / "h.duckdb") as gw:
        value = gw.sql("SELECT md5_number_lower('tnt_x' || chr(31) || 'küy-1') AS h").h[0]
    assert np.array([value], dtype=np.uint64).view(np.int64)[0] == key_hash("tnt_x", "küy-1")


def test_keys_applied_before_and_after_the_filter_loaded_all_replay(tmp_path) -> None:
    setup = Healthy(tmp_path / "keys.duckdb")
    send = setup.tenant.send_message
    try:
        first = setup.clock.run(send(setup.session.id, "one", idempotency_key="k-1"))
        setup.gw.store.flush()  # k-1 is in DuckDB before any lookup loaded the filter
        assert setup.clock.run(send(setup.session.id, "two", idempotency_key="k-2")).metadata.idempotency.replayed is False
        setup.gw.store.flush()  # k-2 applied after the filter was loaded (by the lookup for k-2)
        calls = setup.calls
        again_1 = setup.clock.run(send(setup.session.id, "one", idempotency_key="k-1"))
        again_2 = setup.clock.run(send(setup.session.id, "two", idempotency_key="k-2"))
        assert again_1.metadata.idempotency.replayed and again_2.metadata.idempotency.replayed
        assert again_1.message.id == first.message.id
        assert setup.calls == calls  # replays call no provider
    finally:
        setup.gw.close()
    reopened = Gateway.open(setup.path, clock=setup.clock, seed=7,
                            providers={"vendorA": VendorA(seed=1, **HEALTHY), "vendorB": VendorB(seed=2, **HEALTHY)})
    try:
        client = reopened.connect(setup.api_key)
        again = setup.clock.run(client.send_message(setup.session.id, "two", idempotency_key="k-2"))
        assert again.metadata.idempotency.replayed
        billed = reopened.sql("SELECT count(*) AS n FROM usage_events").n[0]
    finally:
        reopened.close()
    assert billed == 2
