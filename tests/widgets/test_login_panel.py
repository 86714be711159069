"""LoginPanel and open_workbench: a key in, a tenant out, errors in the panel."""

from __future__ import annotations

from vbgateway.widgets import LoginPanel, open_workbench


def test_a_fresh_database_is_seeded_once_and_gives_a_working_key(tmp_path, clock, providers, count):
    path = tmp_path / "new" / "gw.duckdb"
    first = open_workbench(path, clock=clock, providers=providers)
    assert first.seeded and first.gateway.connect(first.api_key).tenant.name == "Acme Corporation"
    first.close()
    second = open_workbench(path, clock=clock, providers=providers)
    assert not second.seeded
    assert second.gateway.connect(second.api_key).tenant.name == "Acme Corporation"
    assert count(second.gateway, "tenants") == 2
    second.close()


def test_a_good_key_shows_the_tenant_badge_and_hides_the_secret(bench, panels):
    panel = LoginPanel(bench.gateway)
    panels.append(panel)
    panel.key.value = bench.api_key
    panel.login_button.click()
    assert panel.client is not None and panel.client.tenant.name == "Acme Corporation"
    assert "Acme Corporation" in panel.badge.value and panel.client.tenant.id in panel.badge.value
    assert panel.key.value == "" and panel.logout_button.disabled is False


def test_a_wrong_key_is_an_error_in_the_panel_not_a_traceback(bench, panels):
    panel = LoginPanel(bench.gateway)
    panels.append(panel)
    panel.key.value = "sk_not_a_real_key"
    panel.login_button.click()
    assert panel.client is None
    assert "INVALID_API_KEY" in panel.status.value and "Traceback" not in panel.status.value
    assert "not logged in" in panel.badge.value


def test_an_empty_key_asks_for_one(bench, panels):
    panel = LoginPanel(bench.gateway)
    panels.append(panel)
    panel.login_button.click()
    assert "Enter an API key" in panel.status.value


def test_logout_reaches_the_other_panels(login, editor):
    login.logout_button.click()
    assert login.client is None and "Logged out" in login.status.value
    assert "log in to see your agents" in editor.cards.children[0].value
    assert editor.form.layout.display == "none"
