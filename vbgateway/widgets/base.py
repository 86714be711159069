"""What every panel shares: errors shown in the panel, never lost, and async work on the kernel's loop.

ipywidgets runs button callbacks through traitlets/comm dispatch, which logs
an exception and carries on; a bug would then look like a dead button. So
every callback goes through ``guarded``: a ``GatewayError`` (a refusal the
user can act on) becomes a message in the panel, anything else is also shown
and, in addition, recorded in ``panel.failures`` so tests can assert it empty.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import ipywidgets as widgets

from ..errors import GatewayError
from .style import notice, stylesheet

__all__ = ["Panel", "guarded", "guarded_async"]

F = TypeVar("F", bound=Callable[..., Any])


class Panel(widgets.VBox):
    """A VBox with a status line, a failure record and a scheduler for coroutines."""

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.failures: list[BaseException] = []
        self.task: asyncio.Task[Any] | None = None
        self.status = widgets.HTML()
        self.header = widgets.HTML(f'<div class="vb-title">{title}</div>'
                                   + (f'<div class="vb-sub">{subtitle}</div>' if subtitle else ""))
        super().__init__()
        self.add_class("vb-panel")

    def set_body(self, *children: widgets.Widget) -> None:
        self.children = (stylesheet(), self.header, *children, self.status)

    def show(self, text: str, kind: str = "info", raw: str = "") -> None:
        self.status.value = notice(text, kind, raw) if text else ""

    def show_error(self, exc: BaseException) -> None:
        if isinstance(exc, GatewayError):
            self.show(f"{exc.code}: {exc.message}", "error")
        else:
            self.show(f"Unexpected error ({type(exc).__name__}): {exc}", "error")

    def schedule(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """Run ``coro`` without blocking the kernel.

        Inside a kernel, widget callbacks run on its asyncio loop, so the
        coroutine becomes a task and the reply arrives later. Without a running
        loop (a script, a synchronous test) it runs to completion right here.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.run_now(coro)
            return None
        self.task = loop.create_task(coro)
        return self.task

    def run_now(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine to completion outside any loop (overridden to use the gateway's clock)."""
        return asyncio.run(coro)


def guarded(method: F) -> F:
    """Show errors of a synchronous callback in the panel; record the unexpected ones."""
    @functools.wraps(method)
    def wrapper(self: Panel, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except GatewayError as exc:
            self.show_error(exc)
        except Exception as exc:  # shown in the panel and recorded for tests
            self.failures.append(exc)
            self.show_error(exc)
        return None
    return wrapper  # type: ignore[return-value]


def guarded_async(method: F) -> F:
    """``guarded`` for coroutines run as tasks (their exceptions would otherwise vanish with the task)."""
    @functools.wraps(method)
    async def wrapper(self: Panel, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except GatewayError as exc:
            self.show_error(exc)
        except Exception as exc:  # shown in the panel and recorded for tests
            self.failures.append(exc)
            self.show_error(exc)
        return None
    return wrapper  # type: ignore[return-value]
