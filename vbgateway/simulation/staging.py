"""How an instance run on another machine hands its rows back: Arrow streams in its result, or Parquet at a stage.

A worker of a cluster does not see the client's disk. After its instance
ran (on a database in the worker's own temporary folder), a task reads the
instance's data tables out as Arrow: either as compressed Arrow IPC streams
carried back in the task's result (the default), or as Parquet files written
to a shared ``fsspec`` location (``stage``: a folder every machine mounts, or
``s3://...`` with ``s3fs``), when results that large should not travel
through the scheduler. Every attempt at a task writes under a place of its
own (``<stage>/<run>/<instance>-<attempt>/``), so a task that Dask reruns
after its worker died never mixes its files with the dead attempt's: the
client merges only what the attempt that finished names, and removes the
run's stage folder once the run is committed.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..lake import filesystem
from ..store.merge import MERGED_TABLES, Merge

__all__ = ["STAGE_BATCH_ROWS", "StagedRows", "merge_staged", "remove_stage", "stage_rows", "staged_readers"]

STAGE_BATCH_ROWS = 200_000  # rows per Arrow batch, read and written: bounded memory on both sides
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")  # a month's rows shrink about fourfold in transit


@dataclass
class StagedRows:
    """One instance's data rows: per table an Arrow IPC stream (``streams``) or a Parquet file URL (``files``)."""

    rows: dict[str, int] = field(default_factory=dict)
    streams: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(len(stream) for stream in self.streams.values())


def stage_rows(con: duckdb.DuckDBPyConnection, stage: str | None, run_id: str, index: int) -> StagedRows:
    """Read every data table of an instance's database (``con``) out for the client.

    ``stage`` None: compressed Arrow IPC streams, returned with the task's
    result. Otherwise Parquet files under a new folder of this attempt.
    """
    staged = StagedRows()
    place = None
    if stage is not None:
        fs, root = filesystem(stage)
        place = f"{root}/{run_id}/{index:03d}-{uuid.uuid4().hex[:12]}"
        fs.makedirs(place, exist_ok=True)
    for table in MERGED_TABLES:
        reader = con.sql(f"SELECT {', '.join(table.column_names)} FROM {table.name}").to_arrow_reader(STAGE_BATCH_ROWS)
        count = 0
        if place is None:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, reader.schema, options=_IPC_OPTIONS) as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    count += batch.num_rows
            staged.streams[table.name] = sink.getvalue().to_pybytes()
        else:
            path = f"{place}/{table.name}.parquet"
            with fs.open(path, "wb") as handle, pq.ParquetWriter(handle, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    count += batch.num_rows
            staged.files[table.name] = fs.unstrip_protocol(path)
        staged.rows[table.name] = count
    return staged


@contextlib.contextmanager
def _reader(staged: StagedRows, table: str) -> Iterator[pa.RecordBatchReader]:
    if table in staged.streams:
        yield pa.ipc.open_stream(pa.py_buffer(staged.streams[table]))
        return
    fs, path = filesystem(staged.files[table])
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        yield pa.RecordBatchReader.from_batches(parquet.schema_arrow, parquet.iter_batches(STAGE_BATCH_ROWS))


def staged_readers(staged: StagedRows) -> Iterator[tuple[str, pa.RecordBatchReader]]:
    """(table, its rows as a stream of batches) for every table the instance wrote rows to."""
    for table in MERGED_TABLES:
        if staged.rows.get(table.name, 0):
            with _reader(staged, table.name) as rows:
                yield table.name, rows


def merge_staged(merge: Merge, staged: StagedRows) -> None:
    """Append an instance's staged rows to the target, inside ``Store.merging``'s transaction."""
    for table, rows in staged_readers(staged):
        merge.add_rows(table, rows)
    staged.streams.clear()  # merged: the streams need not stay in the client's memory


def remove_stage(stage: str, run_id: str) -> None:
    """Remove a run's stage folder (every attempt's files), once its rows are committed or the run failed."""
    fs, root = filesystem(stage)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(f"{root}/{run_id}", recursive=True)
