"""The tenant client over HTTP: ``vbgateway.connect(url, api_key)``.

Same methods, return types and errors as the embedded ``TenantClient``,
answered by a gateway in another process, so that several notebooks,
scripts and dashboards can work on one database at the same time.

Modules: ``connect`` (the entry point), ``tenant`` (the methods), ``wire``
(JSON back into models and DataFrames), ``transport`` (the one place that
does I/O, with its retries), ``retry`` (when and how long to wait),
``envelope`` (error answers back into ``GatewayError``s).
"""

from .connect import connect
from .retry import HttpRetryPolicy
from .tenant import HttpTenantClient

__all__ = ["HttpRetryPolicy", "HttpTenantClient", "connect"]
