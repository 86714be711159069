"""AgentEditor: cards from the database, a form that creates and edits, errors beside fields."""

from __future__ import annotations

import pandas as pd
import pytest


def agent_row(gw, name: str):
    return gw.sql("SELECT * FROM agents WHERE name = ?", [name]).iloc[0]


def test_cards_show_each_agent_with_providers_and_tools(editor):
    text = " ".join(card.children[0].value for card in editor.cards.children)
    assert "Support Assistant" in text and "Sales Concierge" in text
    assert "fallback vendorB" in text and "InvoiceLookup" in text and "updated 2026-03-10" in text
    assert len(editor.edit_buttons) == 2


def test_creating_an_agent_saves_it_and_updates_the_list(editor, gw, count):
    editor.new_button.click()
    editor.name.value = "Billing Bot"
    editor.primary.value, editor.fallback.value = "vendorB", "vendorA"
    editor.prompt.value = "You answer billing questions.\nBe precise."
    editor.tools.value = ["InvoiceLookup", "RefundIssue"]
    editor.save_button.click()
    row = agent_row(gw, "Billing Bot")
    assert (row.primary_provider, row.fallback_provider) == ("vendorB", "vendorA")
    assert row.system_prompt == "You answer billing questions.\nBe precise."
    assert list(row.enabled_tools) == ["InvoiceLookup", "RefundIssue"]
    assert len(editor.cards.children) == 3 and "Billing Bot" in editor.cards.children[-1].children[0].value
    assert "Saved Billing Bot" in editor.status.value and editor.editing.id == row.id


def test_editing_sets_fallback_none_and_a_multiline_prompt(editor, gw, count):
    agent_id = agent_row(gw, "Support Assistant").id
    editor.edit_buttons[agent_id].click()
    assert editor.name.value == "Support Assistant" and editor.fallback.value == "vendorB"
    editor.fallback.value = "none"
    editor.prompt.value = "Line one.\nLine two."
    editor.save_button.click()
    row = agent_row(gw, "Support Assistant")
    assert pd.isna(row.fallback_provider) and row.system_prompt == "Line one.\nLine two."
    assert "no fallback" in " ".join(card.children[0].value for card in editor.cards.children)


@pytest.mark.parametrize("fields, field, text", [
    ({"name": "", "prompt": "ok"}, "name", "at least 1 character"),
    ({"name": "X", "prompt": "   "}, "systemprompt", "must not be empty"),
    ({"name": "X", "prompt": "ok", "primary": "vendorA", "fallback": "vendorA"}, "fallbackprovider", "same as primary"),
    ({"name": "X", "prompt": "ok", "tools": ["9lives"]}, "enabledtools", "tool names"),
])
def test_validation_errors_appear_beside_the_field_and_save_nothing(editor, gw, count, fields, field, text):
    before = count(gw, "agents")
    editor.new_button.click()
    for name, value in fields.items():
        getattr(editor, name).value = value
    editor.save_button.click()
    assert text in editor.field_errors[field].value
    assert [k for k, w in editor.field_errors.items() if w.value] == [field]
    assert "Not saved" in editor.status.value and count(gw, "agents") == before


def test_fixing_the_error_clears_the_mark(editor, gw, count):
    editor.new_button.click()
    editor.prompt.value = "ok"
    editor.save_button.click()
    editor.name.value = "Fixed"
    editor.save_button.click()
    assert editor.field_errors["name"].value == "" and count(gw, "agents", "name = 'Fixed'") == 1
