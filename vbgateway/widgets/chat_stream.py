"""The assistant bubble of a streamed reply: shown at once, growing as text arrives, then the reply as sent.

Every change of a widget's ``value`` is a message on the kernel's comm
channel, and a fast upstream writes a word every millisecond or so; drawing
each delta would queue thousands of messages a browser then replays. So the
bubble is redrawn at most once per ``DRAW_INTERVAL_S`` of the gateway's
clock (the first delta at once), and the end of the stream always draws the
whole text: the reply with its metadata, or the text that came before an
interruption. Text held back by the interval shows with the next delta or at
the end. On a ``VirtualClock`` outside its own loop time stands still, so
such a bubble shows its first delta and then the whole reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as widgets

from ..errors import GatewayError, StreamInterruptedError
from ..models import Reply
from .chat_view import bubble_html, interrupted_html, reply_meta_html, writing_html

if TYPE_CHECKING:
    from ..clock import Clock

__all__ = ["DRAW_INTERVAL_S", "LiveReply"]

DRAW_INTERVAL_S = 0.05


class LiveReply:
    """One assistant bubble fed by ``add`` (a delta), then ended by ``finish`` or ``interrupt``."""

    def __init__(self, clock: Clock, interval_s: float = DRAW_INTERVAL_S) -> None:
        self.clock = clock
        self.interval_s = interval_s
        self.parts: list[str] = []
        self.drawn_at: float | None = None
        self.widget = widgets.HTML(writing_html(""))

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, text: str) -> None:
        """A delta: kept, and drawn unless the last drawing is less than ``interval_s`` old."""
        self.parts.append(text)
        now = self.clock.monotonic()
        if self.drawn_at is None or now - self.drawn_at >= self.interval_s:
            self.drawn_at = now
            self.widget.value = writing_html(self.text)

    def finish(self, reply: Reply) -> None:
        """The reply as the gateway stored it, with the same metadata line as a reply sent whole."""
        self.widget.value = bubble_html("assistant", reply.message.content) + reply_meta_html(reply)

    def interrupt(self, exc: GatewayError, *, keyed: bool) -> None:
        """Text came, then the stream failed: keep that text, marked, and say what was billed."""
        if isinstance(exc, StreamInterruptedError):
            note = "the provider failed mid-reply: not stored, nothing billed"
        else:  # the way to the gateway was lost, not the reply: the gateway finishes, stores and bills it
            note = "the connection was lost; the gateway still finishes and bills this reply" + (
                ", and sending again with this key shows it" if keyed else "")
        self.widget.value = interrupted_html(self.text, exc.code, note)
