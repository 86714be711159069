"""AgentEditor: the tenant's agents as cards, and one form to create or edit them.

All validation is the gateway's (the same rules as the HTTP API); the panel
only maps each reported field back to the widget it came from, so the error
appears beside that field.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from ..errors import GatewayError
from ..models import Agent
from .base import Panel, guarded
from .login import AnyTenantClient, LoginPanel
from .style import badge, card_html, esc, gap

__all__ = ["NO_FALLBACK", "AgentEditor"]

NO_FALLBACK = "none"
LABEL = {"description_width": "120px"}
FIELD_WIDTH = "96%"


def _field_key(name: str) -> str:
    """``system_prompt``, ``systemPrompt`` and ``enabled_tools.0`` all name one form field."""
    return name.split(".")[0].replace("_", "").lower()


class AgentEditor(Panel):
    """List, create and edit the logged-in tenant's agents."""

    def __init__(self, login: LoginPanel) -> None:
        super().__init__("Agents", "Each agent answers with its primary provider and falls back to the other.")
        self.login = login
        self.editing: Agent | None = None
        self.edit_buttons: dict[str, widgets.Button] = {}
        providers = sorted(login.gateway.providers)
        self.name = widgets.Text(description="Name", placeholder="Support Assistant", style=LABEL,
                                 layout=widgets.Layout(width=FIELD_WIDTH))
        self.primary = widgets.Dropdown(description="Primary provider", options=providers, style=LABEL)
        self.fallback = widgets.Dropdown(description="Fallback", options=[NO_FALLBACK, *providers], style=LABEL)
        self.prompt = widgets.Textarea(description="System prompt", placeholder="You are …", rows=6, style=LABEL,
                                       layout=widgets.Layout(width=FIELD_WIDTH))
        self.tools = widgets.TagsInput(value=[], allowed_tags=[], allow_duplicates=False,
                                       placeholder="add a tool, press Enter", layout=widgets.Layout(flex="1"))
        self.field_errors = {key: widgets.HTML(layout=widgets.Layout(margin="0 0 0 124px"))
                             for key in ("name", "primaryprovider", "fallbackprovider", "systemprompt", "enabledtools")}
        self.form_title = widgets.HTML()
        self.save_button = widgets.Button(description="Save agent", button_style="primary", icon="save")
        self.new_button = widgets.Button(description="New agent", icon="plus")
        self.save_button.on_click(lambda _: self.save())
        self.new_button.on_click(lambda _: self.new())
        self.cards = gap(widgets.VBox(), 6)
        errors = self.field_errors
        tools_label = widgets.HTML('<div class="vb-label-right">Tools</div>', layout=widgets.Layout(width="120px"))
        tools_row = widgets.HBox([tools_label, self.tools], layout=widgets.Layout(width=FIELD_WIDTH))
        self.form = gap(widgets.VBox([
            self.form_title, self.name, errors["name"], self.primary, errors["primaryprovider"],
            self.fallback, errors["fallbackprovider"], self.prompt, errors["systemprompt"],
            tools_row, errors["enabledtools"], widgets.HBox([self.save_button, self.new_button]),
        ], layout=widgets.Layout(flex="1 1 420px", min_width="360px")), 2)
        left = widgets.VBox([widgets.HTML('<div class="vb-sub">Your agents</div>'), self.cards],
                            layout=widgets.Layout(flex="1 1 320px", min_width="280px"))
        self.set_body(gap(widgets.HBox([left, self.form], layout=widgets.Layout(flex_flow="row wrap")), 18))
        login.on_change(lambda _: self.refresh())
        self.refresh()

    @property
    def client(self) -> AnyTenantClient | None:
        return self.login.client

    @guarded
    def refresh(self) -> list[Agent]:
        """Redraw the cards from the database and reset the form."""
        self.edit_buttons = {}
        if self.client is None:
            self.cards.children = (widgets.HTML(badge("log in to see your agents", "muted")),)
            self.form.layout.display = "none"
            return []
        self.form.layout.display = None
        agents = self.client.list_agents()
        self.cards.children = tuple(self._card(agent) for agent in agents) or (
            widgets.HTML('<div class="vb-sub">No agents yet: create one with the form.</div>'),)
        if self.editing is None:
            self.new()
        return agents

    def _card(self, agent: Agent) -> widgets.Widget:
        providers = badge(agent.primary_provider) + (badge(f"fallback {agent.fallback_provider}", "warn")
                                                     if agent.fallback_provider else badge("no fallback", "muted"))
        tools = " ".join(badge(t, "muted") for t in agent.enabled_tools) or '<span class="vb-sub">no tools</span>'
        updated = agent.updated_at.strftime("%Y-%m-%d %H:%M UTC")
        html = card_html(agent.name, [providers, tools, f'<span class="vb-sub">updated {esc(updated)} · '
                                                       f'{esc(agent.id)}</span>'])
        button = widgets.Button(description="Edit", icon="pencil", layout=widgets.Layout(width="80px"))
        button.on_click(lambda _, agent_id=agent.id: self.edit(agent_id))
        self.edit_buttons[agent.id] = button
        return gap(widgets.HBox([widgets.HTML(html, layout=widgets.Layout(flex="1")), button],
                                layout=widgets.Layout(align_items="center")), 8)

    @guarded
    def new(self) -> None:
        """Clear the form for a new agent."""
        self.editing = None
        self.form_title.value = '<b>New agent</b>'
        self.name.value, self.prompt.value, self.tools.value = "", "", []
        self.primary.value = self.primary.options[0]
        self.fallback.value = next((p for p in self.fallback.options if p not in (NO_FALLBACK, self.primary.value)),
                                   NO_FALLBACK)
        self._clear_errors()

    @guarded
    def edit(self, agent_id: str) -> None:
        """Load an agent into the form."""
        assert self.client is not None
        agent = self.client.get_agent(agent_id)
        self.editing = agent
        self.form_title.value = f'<b>Edit {esc(agent.name)}</b> <span class="vb-sub">{esc(agent.id)}</span>'
        self.name.value, self.prompt.value = agent.name, agent.system_prompt
        self.primary.value = agent.primary_provider
        self.fallback.value = agent.fallback_provider or NO_FALLBACK
        self.tools.value = list(agent.enabled_tools)
        self._clear_errors()
        self.show("")

    def fields(self) -> dict[str, Any]:
        """The form as create/update keywords ("none" means no fallback)."""
        return {"name": self.name.value, "primary_provider": self.primary.value,
                "fallback_provider": None if self.fallback.value == NO_FALLBACK else self.fallback.value,
                "system_prompt": self.prompt.value, "enabled_tools": list(self.tools.value)}

    @guarded
    def save(self) -> Agent | None:
        """Create or update; on a validation error, mark the fields and change nothing."""
        if self.client is None:
            self.show("Log in first.", "error")
            return None
        self._clear_errors()
        try:
            if self.editing is None:
                agent = self.client.create_agent(**self.fields())
            else:
                agent = self.client.update_agent(self.editing.id, **self.fields())
        except GatewayError as exc:
            self._mark_errors(exc)
            return None
        self.editing = agent
        self.refresh()
        self.edit(agent.id)
        self.show(f"Saved {agent.name} ({agent.id}).", "ok")
        return agent

    def _clear_errors(self) -> None:
        for error in self.field_errors.values():
            error.value = ""

    def _mark_errors(self, exc: GatewayError) -> None:
        unplaced = []
        for item in exc.details.get("errors", []):
            target = self.field_errors.get(_field_key(str(item.get("field", ""))))
            text = str(item.get("message", "")).removeprefix("Value error, ")
            if target is None:
                unplaced.append(text)
            else:
                target.value = f'<div class="vb-field-error">⚠ {esc(text)}</div>'
        self.show(f"Not saved: {exc.message}" if unplaced or not exc.details.get("errors") else
                  "Not saved: fix the marked fields.", "error")
