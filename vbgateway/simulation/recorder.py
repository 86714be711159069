"""One row per simulated customer message, kept column-wise.

A month can hold a million messages; per-row objects would cost gigabytes,
so each column is a compact ``array`` (or a list of shared strings) and the
DataFrame is built once, at the end.
"""

from __future__ import annotations

from array import array
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OUTCOMES", "RowRecorder"]

OUTCOMES = ("ok", "failed")


_COLUMNS = ("index", "session", "tenant", "agent", "sent_s", "latency_ms", "voice", "client_retry", "replayed", "ok",
            "vendor", "fallback", "attempts", "primary_calls", "tokens_in", "tokens_out", "cost_units")


class RowRecorder:
    """Append-only columns; codes index into small tables of names."""

    def __init__(self, tenants: list[str], agents: list[str], vendors: list[str]) -> None:
        self.tenants, self.agents, self.vendors = tenants, agents, vendors
        self.index = array("q")
        self.session = array("q")
        self.tenant = array("h")
        self.agent = array("h")
        self.sent_s = array("d")
        self.latency_ms = array("d")
        self.voice = array("b")
        self.client_retry = array("b")
        self.replayed = array("b")
        self.ok = array("b")
        self.vendor = array("h")  # -1: none
        self.fallback = array("b")
        self.attempts = array("h")
        self.primary_calls = array("h")
        self.tokens_in = array("l")
        self.tokens_out = array("l")
        self.cost_units = array("q")  # USD x 1e10, exact
        self.request_ids: list[str] = []  # the latest ids; older ones are packed in _id_chunks
        self._id_chunks: list[tuple[bytes, bytes]] = []  # (int32 offsets, UTF-8 bytes), Arrow's string layout

    def __len__(self) -> int:
        return len(self.index)

    def _id_packs(self) -> list[tuple[bytes, bytes]]:
        """Every request id so far, packed (~30 bytes an id instead of ~75 as ``str``)."""
        return [*self._id_chunks, _pack(self.request_ids)] if self.request_ids else list(self._id_chunks)

    def __getstate__(self) -> dict[str, object]:
        """Pickled compactly: an instance's rows travel to the parent process as flat arrays."""
        state = dict(self.__dict__)
        state["_id_chunks"], state["request_ids"] = self._id_packs(), []
        return state

    def extend(self, other: RowRecorder) -> None:
        """Append another instance's rows (same tenant, agent and vendor tables); ``frame`` sorts them in."""
        if (other.tenants, other.agents, other.vendors) != (self.tenants, self.agents, self.vendors):
            raise ValueError("recorders of different scenarios cannot be merged")
        for name in _COLUMNS:
            getattr(self, name).extend(getattr(other, name))
        self._id_chunks = [*self._id_packs(), *other._id_packs()]  # one Arrow array once the frame is built
        self.request_ids = []

    def add(self, index: int, session: int, tenant: int, agent: int, sent_s: float, latency_ms: float, voice: bool,
            client_retry: bool, replayed: bool, ok: bool, vendor: int, fallback: bool, attempts: int,
            primary_calls: int, tokens_in: int, tokens_out: int, cost_units: int, request_id: str) -> None:
        self.index.append(index)
        self.session.append(session)
        self.tenant.append(tenant)
        self.agent.append(agent)
        self.sent_s.append(sent_s)
        self.latency_ms.append(latency_ms)
        self.voice.append(voice)
        self.client_retry.append(client_retry)
        self.replayed.append(replayed)
        self.ok.append(ok)
        self.vendor.append(vendor)
        self.fallback.append(fallback)
        self.attempts.append(attempts)
        self.primary_calls.append(primary_calls)
        self.tokens_in.append(tokens_in)
        self.tokens_out.append(tokens_out)
        self.cost_units.append(cost_units)
        self.request_ids.append(request_id)

    def frame(self, start: datetime, *, release: bool = False) -> pd.DataFrame:
        """The rows in message order (the order the workload generated them).

        ``release`` empties the recorder column by column as the frame is built,
        so a month of rows is not held twice (the run's last recorder is not needed after).
        """
        import pandas as pd  # here only: the instance processes that record rows never build the frame
        import pyarrow as pa

        order = np.argsort(np.frombuffer(self.index, dtype=np.int64), kind="stable")

        def col(name: str, dtype: str) -> np.ndarray:
            values: array[int] | array[float] = getattr(self, name)
            out = np.frombuffer(values, dtype=dtype)[order] if len(values) else np.array([], dtype=dtype)
            if release:
                setattr(self, name, array(values.typecode))
            return out

        def names(name: str, table: list[str]) -> pd.Categorical:
            codes_np = col(name, "int16").astype(np.int32)
            return pd.Categorical.from_codes(codes_np, categories=list(table)) if len(table) else codes_np

        def ids() -> pd.api.extensions.ExtensionArray:
            packs = self._id_packs()
            packed = pa.chunked_array([pa.StringArray.from_buffers(len(offsets) // 4 - 1, pa.py_buffer(offsets),
                                                                   pa.py_buffer(data)) for offsets, data in packs],
                                      pa.string()).combine_chunks()
            if release:
                self._id_chunks, self.request_ids = [], []
            return pd.array(packed.take(pa.array(order)), dtype=pd.ArrowDtype(pa.string()))

        base = pd.Timestamp(start)
        frame = pd.DataFrame({
            "message": col("index", "int64"),
            "session": col("session", "int64"),
            "tenant": names("tenant", self.tenants),
            "agent": names("agent", self.agents),
            "sent_at": base + pd.to_timedelta(col("sent_s", "float64"), unit="s").round("us"),
            "channel": np.where(col("voice", "int8") == 1, "voice", "chat"),
            "client_retry": col("client_retry", "int8").astype(bool),
            "replayed": col("replayed", "int8").astype(bool),
            "outcome": np.where(col("ok", "int8") == 1, OUTCOMES[0], OUTCOMES[1]),
            "vendor_used": pd.Categorical.from_codes(col("vendor", "int16").astype(np.int32),
                                                     categories=list(self.vendors)),
            "fallback_used": col("fallback", "int8").astype(bool),
            "attempts": col("attempts", "int16").astype(np.int32),
            "primary_calls": col("primary_calls", "int16").astype(np.int32),
            "latency_ms": col("latency_ms", "float64").round(3),
            "tokens_in": col("tokens_in", "int64"),
            "tokens_out": col("tokens_out", "int64"),
            "cost_units": col("cost_units", "int64"),
            # Arrow strings: a month's request ids cost ~30 bytes each instead of ~90 as Python objects
            "request_id": ids(),
        }, copy=False)  # the columns are fresh: consolidating them would hold a month's rows twice
        frame["cost_usd"] = frame["cost_units"] / 1e10
        return frame


def _pack(values: list[str]) -> tuple[bytes, bytes]:
    """Strings as Arrow lays out a string array: int32 offsets and the UTF-8 bytes.

    Packed without pyarrow (about 50 MB per process), which an instance's
    process never loads; the parent makes the Arrow array from the buffers.
    """
    encoded = [value.encode("utf-8") for value in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int32, count=len(encoded)), out=offsets[1:])
    return offsets.tobytes(), b"".join(encoded)


def seconds_between(start: datetime, moment: datetime) -> float:
    return (moment - start) / timedelta(seconds=1)
