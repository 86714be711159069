"""Fast synthetic usage: millions of billed replies (and their tries) straight into DuckDB.

The simulator drives the real gateway and is the right tool for behaviour;
this is the tool for volume (benchmarks, report fixtures with known totals).
Rows are built column-wise with numpy, turned into Arrow without a Python
loop, and appended in bulk one calendar month at a time.

Callers use the names below as ``synthetic.generate`` and so on; the parts:

- ``spec``: what to generate (``SyntheticSpec``) and what was written (``SyntheticResult``);
- ``tenants``: the tenants and agents, made through the gateway (``create_tenants``, ``populate``);
- ``generator``: a month of rows at a time, drawn from a seed, no database (``month_batches``);
- ``columns``: Arrow columns from numpy arrays without a Python object per row;
- ``loader``: the months written into the store in whole row groups (``generate``).
"""

from __future__ import annotations

from .generator import month_batches
from .loader import ROW_GROUP_ROWS, generate
from .spec import SyntheticResult, SyntheticSpec
from .tenants import create_tenants, populate

__all__ = ["ROW_GROUP_ROWS", "SyntheticResult", "SyntheticSpec", "create_tenants", "generate", "month_batches",
           "populate"]
