"""LoginPanel: an API key in, a tenant client out, shared with the other panels.

The other panels hold the LoginPanel rather than a client, so logging out (or
in as another tenant) reaches them through ``on_change`` listeners. It logs in
to an embedded ``Gateway`` or to the database's ``LocalService`` (over HTTP);
the panels use the client they get the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets

from ..client import HttpTenantClient
from ..errors import AuthenticationError
from ..gateway import Gateway
from ..tenant import TenantClient
from .base import Panel, guarded
from .style import badge, esc
from .workbench import LocalService

__all__ = ["AnyTenantClient", "LoginPanel"]

AnyTenantClient = TenantClient | HttpTenantClient  # same methods: the panels use either


class LoginPanel(Panel):
    """Password field, log in / log out, and a badge naming the tenant."""

    def __init__(self, gateway: Gateway | LocalService, api_key: str | None = None) -> None:
        super().__init__("Log in", "Paste a tenant API key (sk_…); it is checked against its stored hash.")
        self.gateway = gateway
        self.client: AnyTenantClient | None = None
        self._listeners: list[Callable[[AnyTenantClient | None], object]] = []
        self.key = widgets.Password(placeholder="sk_…", description="API key",
                                    layout=widgets.Layout(width="420px"))
        self.login_button = widgets.Button(description="Log in", button_style="primary", icon="sign-in")
        self.logout_button = widgets.Button(description="Log out", icon="sign-out", disabled=True)
        self.badge = widgets.HTML()
        self.login_button.on_click(lambda _: self.login())
        self.logout_button.on_click(lambda _: self.logout())
        self.set_body(widgets.HBox([self.key, self.login_button, self.logout_button]), self.badge)
        self._render()
        if api_key:
            self.key.value = api_key
            self.login()

    def on_change(self, callback: Callable[[AnyTenantClient | None], object]) -> None:
        """Call ``callback(client or None)`` after every login and logout."""
        self._listeners.append(callback)

    @guarded
    def login(self) -> AnyTenantClient | None:
        key = self.key.value.strip()
        if not key:
            self.show("Enter an API key first.", "error")
            return None
        try:
            client = self.gateway.connect(key)
        except AuthenticationError:
            self._set_client(None)
            self.show("That API key is unknown or revoked (INVALID_API_KEY).", "error")
            return None
        self.key.value = ""  # never leave the secret in the widget state
        self._set_client(client)
        self.show("")
        return client

    @guarded
    def logout(self) -> None:
        self._set_client(None)
        self.show("Logged out.", "info")

    def _set_client(self, client: AnyTenantClient | None) -> None:
        self.client = client
        self._render()
        for callback in list(self._listeners):
            callback(client)

    def _render(self) -> None:
        logged_in = self.client is not None
        self.logout_button.disabled = not logged_in
        self.login_button.disabled = logged_in
        self.key.disabled = logged_in
        if self.client is None:
            self.badge.value = badge("not logged in", "muted")
        else:
            tenant = self.client.tenant
            self.badge.value = (badge("logged in", "ok") + f" <b>{esc(tenant.name)}</b> "
                                + f'<span class="vb-sub">{esc(tenant.id)}</span>')
