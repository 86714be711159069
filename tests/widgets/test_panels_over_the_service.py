"""The same panels over the database's local service: HTTP tenant clients, coroutines on a real event loop.

``open_workbench`` without gateway options goes through the service; the
panels get ``HttpTenantClient``s from it and must behave as they do over an
embedded gateway: sends scheduled on the running loop (a kernel's) or run to
completion without one, validation errors beside their field, usage and CSV
export from the same database.
"""

from __future__ import annotations

import asyncio

import pytest

from vbgateway.client import HttpTenantClient
from vbgateway.client.service import stop_service
from vbgateway.widgets import AgentEditor, ChatPanel, LoginPanel, UsageDashboard, open_workbench


@pytest.fixture
def served(tmp_path):
    db = tmp_path / "data" / "served.duckdb"
    bench = open_workbench(db)
    yield bench
    stop_service(db)


@pytest.fixture
def login(served, panels):
    panel = LoginPanel(served.gateway, api_key=served.api_key)
    panels.append(panel)
    return panel


def test_login_gives_an_http_client_and_a_wrong_key_is_an_error_in_the_panel(served, login, panels):
    assert isinstance(login.client, HttpTenantClient) and login.client.tenant.name == "Acme Corporation"
    other = LoginPanel(served.gateway)
    panels.append(other)
    other.key.value = "sk_not_a_real_key"
    other.login_button.click()
    assert other.client is None and "INVALID_API_KEY" in other.status.value


def test_a_send_is_scheduled_on_the_running_loop_and_without_one_runs_to_completion(login, panels):
    chat = ChatPanel(login)
    panels.append(chat)

    async def kernel_like():
        chat.message.value = "Where is my invoice?"
        chat.send_button.click()
        assert chat.task is not None and chat.busy  # scheduled: the loop is free meanwhile
        return await chat.task

    reply = asyncio.run(kernel_like())
    assert reply is not None and reply.message.content in chat.conversation.children[-1].value
    chat.message.value = "And my order?"
    chat.send_button.click()  # no running loop: the panel runs the send itself
    assert len(chat.replies) == 2 and chat.status.value == "" and len(chat.conversation.children) == 4


def test_the_editor_saves_and_marks_validation_errors(login, panels):
    editor = AgentEditor(login)
    panels.append(editor)
    assert sorted(editor.primary.options) == ["vendorA", "vendorB"]
    editor.new()
    editor.name.value, editor.prompt.value = "Over HTTP", "You help."
    saved = editor.save()
    assert saved is not None and saved.id in editor.edit_buttons
    editor.new()
    editor.name.value, editor.prompt.value = "   ", "You help."
    assert editor.save() is None
    assert "⚠" in editor.field_errors["name"].value


def test_the_dashboard_counts_a_reply_and_exports_it(login, panels, tmp_path):
    chat, dashboard = ChatPanel(login), UsageDashboard(login, reports_dir=tmp_path / "reports")
    panels.extend([chat, dashboard])
    chat.message.value = "Hi"
    chat.send_button.click()
    dashboard.refresh()
    assert dashboard.status.value == "" and chat.replies[-1].metadata.provider_used in dashboard.events.value
    exported = dashboard.export()
    assert exported is not None and chat.replies[-1].metadata.request_id in exported.read_text()


def test_logging_in_again_after_the_service_stopped_starts_it_again(served, login):
    stopped = served.gateway.info
    assert stop_service(served.gateway.db) == stopped  # e.g. idle for an hour while the notebook stayed open
    login.logout()
    login.key.value = served.api_key
    login.login_button.click()
    assert login.client is not None and login.client.list_agents()
    assert served.gateway.info.pid != stopped.pid and login.status.value == ""


def test_a_stopped_service_is_a_message_in_the_panel_not_a_traceback(served, login, panels, tmp_path):
    dashboard = UsageDashboard(login, reports_dir=tmp_path / "reports")
    panels.append(dashboard)
    stop_service(served.gateway.db)
    dashboard.refresh()
    assert "SERVICE_UNAVAILABLE" in dashboard.status.value and "Traceback" not in dashboard.status.value
