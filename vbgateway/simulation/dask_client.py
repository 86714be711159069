"""The Dask side of a cluster run: which cluster (``local:N`` or an address), its dashboard, a bar over tasks.

Dask is an optional extra (``vbgateway[cluster]``): it is imported here on
first use, and its absence is a ``CLUSTER_ERROR`` naming the extra. A
``local:N`` cluster listens on loopback only; its dashboard needs bokeh and
is simply absent without it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import GatewayError, ValidationError
from .world import Progress

if TYPE_CHECKING:
    from distributed import Client
    from tqdm import tqdm

__all__ = ["ClusterError", "cluster_client", "dashboard_link", "distributed_module", "local_workers", "task_bar"]

_LOCAL = "local:"
_SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")


class ClusterError(GatewayError):
    """The cluster cannot be reached or used, or lost a task more often than Dask allows."""

    default_code = "CLUSTER_ERROR"
    default_status = 503


def distributed_module() -> Any:
    """``distributed``, or a CLUSTER_ERROR that names the extra to install."""
    try:
        import distributed
    except ImportError as exc:  # an optional extra
        raise ClusterError("running on Dask needs the cluster extra: pip install 'vbgateway[cluster]'") from exc
    return distributed


def local_workers(cluster: str) -> int | None:
    """N of ``"local:N"``; None for a scheduler address; VALIDATION_ERROR for anything else."""
    text = cluster.strip()
    if text.startswith(_LOCAL):
        count = text[len(_LOCAL):]
        if not count.isdigit() or not 1 <= int(count) <= 256:
            raise ValidationError("a local cluster is local:N with N worker processes (1 to 256)",
                                  details={"cluster": cluster})
        return int(count)
    if text.startswith(_SCHEMES) or (":" in text and text.rsplit(":", 1)[1].isdigit()):
        return None
    raise ValidationError("a cluster is a scheduler address (tcp://host:8786) or local:N",
                          details={"cluster": cluster})


def _dashboard_address() -> str | None:
    """Loopback, a free port; none without bokeh (Dask's dashboard needs it)."""
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return None
    return "127.0.0.1:0"


@contextlib.contextmanager
def cluster_client(cluster: Client | str) -> Iterator[Client]:
    """A Dask client for ``cluster``: a ``distributed.Client`` (used as it is), a scheduler address, or
    ``local:N`` (a ``LocalCluster`` of N single-threaded worker processes on loopback, stopped afterwards)."""
    distributed = distributed_module()
    if isinstance(cluster, distributed.Client):
        yield cluster
        return
    if not isinstance(cluster, str):
        raise ValidationError("a cluster is a distributed.Client, a scheduler address or local:N")
    workers = local_workers(cluster)
    try:
        if workers is not None:
            local = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address=_dashboard_address(),
                                             silence_logs=logging.ERROR)
            stack = contextlib.ExitStack()
            stack.enter_context(local)
            client = stack.enter_context(distributed.Client(local))
        else:
            stack = contextlib.ExitStack()
            client = stack.enter_context(distributed.Client(cluster.strip(), timeout="20s"))
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask cluster {cluster}: {exc}", details={"cluster": cluster}) from exc
    with stack:
        yield client


def _serves_dashboard(dask_scheduler: Any) -> bool:
    """On the scheduler: whether its HTTP server carries Dask's bokeh dashboard (it serves health and metrics
    without it, on the same port)."""
    applications = getattr(dask_scheduler.http_application, "applications", [])
    return any("Bokeh" in type(app).__name__ for app in applications)


def dashboard_link(client: Client) -> str | None:
    """The Dask dashboard's URL, or None where the scheduler serves none (bokeh missing, or switched off)."""
    try:
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return None
        if not client.run_on_scheduler(_serves_dashboard):
            return None
    except Exception:
        return None
    return str(client.dashboard_link)


def task_bar(total: int, *, quiet: bool = False, label: str = "instances") -> tuple[Progress, tqdm]:
    """A tqdm bar over a cluster run's tasks (a widget in notebooks), and the callback that moves it.

    On a cluster ``simulate`` calls its progress callback once per finished
    task, with the messages finished so far.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="task", desc=label, disable=quiet, dynamic_ncols=True)

    def update(_simulated_s: float, messages: int) -> None:
        bar.update(1)
        bar.set_postfix_str(f"{messages:,} messages")

    return update, bar
