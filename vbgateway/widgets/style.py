"""One stylesheet and a few HTML helpers shared by every panel.

Why HTML strings: ipywidgets has no typography or card primitives, and one
``<style>`` block (scoped by ``vb-`` class names) keeps every panel's spacing
and fonts consistent without a frontend extension. Everything that ends up in
HTML passes through ``esc`` first: agent names and messages are user input.
"""

from __future__ import annotations

import html
from decimal import Decimal

import ipywidgets as widgets

__all__ = ["CSS", "badge", "card_html", "esc", "fmt_change", "fmt_int", "fmt_usd", "gap", "notice", "stylesheet",
           "table_html"]

CSS = """
<style>
.vb-panel { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 13px;
            color: #1f2933; border: 1px solid #d9e2ec; border-radius: 10px; padding: 14px 16px;
            background: #fff; gap: 10px; }
.vb-panel .widget-html-content { line-height: 1.5; }
.vb-panel .widget-html, .vb-panel .widget-html-content { min-height: 0; }
.vb-label-right { text-align: right; padding-right: 8px; color: var(--jp-widgets-label-color, #1f2933); }
.vb-title { font-size: 16px; font-weight: 600; margin: 0 0 4px 0; color: #102a43; }
.vb-sub { color: #627d98; font-size: 12px; }
.vb-badge { display: inline-block; line-height: 16px; padding: 1px 8px; border-radius: 999px; font-size: 11px;
            font-weight: 600;
            background: #e3f2fd; color: #0b4f8a; margin-right: 4px; white-space: nowrap; }
.vb-badge.warn { background: #fff3cd; color: #8a5a00; }
.vb-badge.ok { background: #e3f9e5; color: #1b6b2b; }
.vb-badge.err { background: #fde8e8; color: #9b1c1c; }
.vb-badge.muted { background: #f0f4f8; color: #486581; }
.vb-notice { padding: 8px 12px; border-radius: 8px; font-size: 13px; line-height: 1.45; }
.vb-notice.error { background: #fde8e8; color: #9b1c1c; border: 1px solid #f8b4b4; }
.vb-notice.info { background: #e3f2fd; color: #0b4f8a; border: 1px solid #b3d7f5; }
.vb-notice.ok { background: #e3f9e5; color: #1b6b2b; border: 1px solid #a8e0b0; }
.vb-field-error { color: #c81e1e; font-size: 12px; min-height: 0; }
.vb-card { border: 1px solid #d9e2ec; border-radius: 8px; padding: 8px 12px; background: #f8fafc;
           line-height: 1.8; }
.vb-card b { color: #102a43; }
.vb-chat { max-height: 420px; overflow-y: auto; padding: 4px 2px; gap: 6px; }
.vb-bubble { max-width: 78%; padding: 8px 12px; border-radius: 14px; line-height: 1.45; white-space: pre-wrap; }
.vb-bubble.user { background: #2563eb; color: #fff; margin-left: auto; border-bottom-right-radius: 4px; }
.vb-bubble.assistant { background: #f0f4f8; color: #102a43; border-bottom-left-radius: 4px; }
.vb-bubble.failed { background: #fde8e8; color: #9b1c1c; text-decoration: line-through; }
.vb-bubble.interrupted { background: #f0f4f8; color: #102a43; border-left: 3px solid #e02424; }
.vb-typing { display: inline-block; margin-left: 4px; white-space: nowrap; }
.vb-typing i { display: inline-block; width: 5px; height: 5px; margin: 0 1px; border-radius: 50%;
               background: #829ab1; vertical-align: middle; animation: vb-blink 1.2s infinite both; }
.vb-typing i:nth-child(2) { animation-delay: .2s; } .vb-typing i:nth-child(3) { animation-delay: .4s; }
.vb-row-user { display: flex; justify-content: flex-end; }
.vb-meta { font-size: 11px; color: #627d98; margin: 3px 0 6px 6px; line-height: 18px; }
.vb-kpi { border: 1px solid #d9e2ec; border-radius: 10px; padding: 10px 14px; min-width: 140px; background: #f8fafc; }
.vb-kpi .label { font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: #627d98; }
.vb-kpi .value { font-size: 22px; font-weight: 600; color: #102a43; margin: 2px 0; }
.vb-kpi .up, .vb-kpi .down { color: #334e68; font-size: 12px; font-weight: 600; }
.vb-kpi .flat { color: #627d98; font-size: 12px; }
.vb-table { border-collapse: collapse; width: 100%; font-size: 12px; }
.vb-table th { text-align: left; color: #486581; font-weight: 600; border-bottom: 1px solid #d9e2ec; padding: 4px 8px; }
.vb-table td { border-bottom: 1px solid #f0f4f8; padding: 4px 8px; }
.vb-table td.num, .vb-table th.num { text-align: right; font-variant-numeric: tabular-nums; }
.vb-gauge { height: 14px; background: #f0f4f8; border-radius: 7px; overflow: hidden; }
.vb-gauge > div { height: 100%; border-radius: 7px; }
.vb-spinner { display: inline-block; width: 12px; height: 12px; border: 2px solid #b3d7f5; border-top-color: #2563eb;
              border-radius: 50%; animation: vb-spin .8s linear infinite; vertical-align: middle; margin-right: 6px; }
.vb-gap-2 { gap: 2px; } .vb-gap-6 { gap: 6px; } .vb-gap-8 { gap: 8px; } .vb-gap-18 { gap: 18px; }
@keyframes vb-spin { to { transform: rotate(360deg); } }
@keyframes vb-blink { 0%, 80%, 100% { opacity: .25; } 40% { opacity: 1; } }
</style>
"""


def stylesheet() -> widgets.HTML:
    """The stylesheet as a widget; each panel embeds one so any panel displays well on its own."""
    return widgets.HTML(CSS, layout=widgets.Layout(height="0px", margin="0"))


def gap(box: widgets.Box, px: int) -> widgets.Box:
    """Space between a box's children (ipywidgets' Layout has no ``gap``): 2, 6, 8 or 18 px."""
    box.add_class(f"vb-gap-{px}")
    return box


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def badge(text: str, kind: str = "") -> str:
    return f'<span class="vb-badge {kind}">{esc(text)}</span>'


def notice(text: str, kind: str = "info", raw: str = "") -> str:
    """A coloured message box; ``raw`` is trusted extra HTML (e.g. an attempts table)."""
    return f'<div class="vb-notice {kind}">{esc(text)}{raw}</div>'


def card_html(title: str, lines: list[str]) -> str:
    """A small card: an escaped title and already-built HTML lines."""
    return f'<div class="vb-card"><b>{esc(title)}</b><br>' + "<br>".join(lines) + "</div>"


def table_html(headers: list[str], rows: list[list[object]], numeric: set[int] | None = None) -> str:
    """A plain styled table; cells are escaped, columns in ``numeric`` right-aligned."""
    numeric = numeric or set()
    cls = lambda i: ' class="num"' if i in numeric else ""  # noqa: E731
    head = "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{esc(c)}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="vb-sub">nothing in this period</td></tr>'
    return f'<table class="vb-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def fmt_usd(value: Decimal | float | int | None) -> str:
    """Money for people: cents for big amounts, enough digits that per-message costs are not 0.00."""
    amount = Decimal(str(value or 0))
    if amount == 0:
        return "$0.00"
    if abs(amount) >= 1 or amount == amount.quantize(Decimal("0.01")):
        return f"${amount:,.2f}"
    if abs(amount) >= Decimal("0.01"):
        return f"${amount:.4f}"
    return f"${amount:.6f}"


def fmt_int(value: int | Decimal) -> str:
    return f"{int(value):,}"


def fmt_change(current: Decimal | int, previous: Decimal | int) -> tuple[str, str]:
    """(text, css class) of the change against the previous period."""
    current, previous = Decimal(str(current)), Decimal(str(previous))
    if previous == 0:
        return ("new" if current else "no change", "up" if current else "flat")
    pct = (current - previous) / previous * 100
    if abs(pct) < Decimal("0.05"):
        return "no change", "flat"
    return (f"▲ {pct:.1f}%" if pct > 0 else f"▼ {abs(pct):.1f}%"), ("up" if pct > 0 else "down")
