"""Read an invoice as finance does: the amounts printed on each line and the printed total."""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["dollars", "printed_lines", "printed_total"]

_ROW = re.compile(r"<tr>\s*(.*?)</tr>", re.S)
_CELL = re.compile(r'<td [^>]*class="data row\d+ col\d+"[^>]*>(.*?)</td>', re.S)
_TOTAL = re.compile(r'<div class="vb-total">([^:<]+): (-?\$[\d,]+\.\d\d)</div>')


def dollars(text: str) -> Decimal:
    """``$1,234.56`` as the Decimal it shows."""
    return Decimal(text.strip().replace("$", "").replace(",", ""))


def printed_lines(page: str) -> list[Decimal]:
    """The Amount (last) cell of every row of the charges table."""
    rows = [_CELL.findall(row) for row in _ROW.findall(page)]
    return [dollars(cells[-1]) for cells in rows if cells]


def printed_total(page: str) -> tuple[str, Decimal]:
    """The total's label ("Total due" or "Month to date, not final") and its amount."""
    found = _TOTAL.findall(page)
    assert len(found) == 1, f"expected one printed total, found {found}"
    label, amount = found[0]
    return label, dollars(amount)
