"""The panels in a real JupyterLab and a real browser: run the notebooks, click, see the results."""

from __future__ import annotations

import re

from vbgateway import Gateway
from vbgateway.client.service import stop_service


def open_and_run_all(page, lab, name: str) -> None:
    """Open a notebook with a fresh workspace and run every cell."""
    page.goto(f"{lab.url}/lab/tree/notebooks/{name}?reset")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    page.locator(".jp-NotebookPanel-toolbar .jp-KernelName", has_text="Python 3").wait_for()
    choose = page.locator(".jp-Dialog button", has_text="Select")
    if choose.count():  # JupyterLab asks for a kernel when it has no session for the file yet
        choose.click()
    page.locator(".jp-NotebookPanel .jp-Cell").first.click()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def panel(page, title: str):
    return page.locator(".vb-panel").filter(has=page.locator(".vb-title", has_text=title)).first


def test_try_it_sends_a_message_and_shows_the_reply_with_its_metadata(page, lab, screenshots, publish):
    open_and_run_all(page, lab, "03_try_it.ipynb")
    chat = panel(page, "Try it")
    chat.locator(".vb-bubble.assistant:not(.writing)").first.wait_for()  # the notebook's own send, written out
    box = chat.locator('input[placeholder="Type a message and press Enter"]')
    box.fill("What are your opening hours during the holidays?")
    box.press("Enter")
    reply = chat.locator(".vb-bubble.assistant:not(.writing)").nth(1)  # written out, not still typing
    reply.wait_for()
    meta = chat.locator(".vb-meta").last
    assert "tokens" in meta.inner_text() and "cost $" in meta.inner_text() and "latency" in meta.inner_text()
    assert "What are your opening hours" in chat.locator(".vb-bubble.user").last.inner_text()
    chat.scroll_into_view_if_needed()
    chat.screenshot(path=str(screenshots / "try_it.png"))
    publish(screenshots / "try_it.png")


def test_saving_an_agent_in_the_editor_updates_the_list_and_the_database(page, lab, screenshots):
    open_and_run_all(page, lab, "02_agents.ipynb")
    editor = panel(page, "Agents")
    editor.locator(".vb-card", has_text="Support Assistant").wait_for()
    editor.locator('input[placeholder="Support Assistant"]').fill("Browser Bot")
    editor.locator('textarea[placeholder="You are …"]').fill("You answer from the browser test.\nKeep it short.")
    editor.locator("button", has_text="Save agent").click()
    editor.locator(".vb-notice.ok", has_text="Saved Browser Bot").wait_for()
    editor.locator(".vb-card", has_text="Browser Bot").wait_for()
    editor.screenshot(path=str(screenshots / "agents.png"))
    stop_service(lab.root / "data" / "vbgateway.duckdb")  # the next notebook starts it again
    with Gateway.open(lab.root / "data" / "vbgateway.duckdb") as gw:
        saved = gw.sql("SELECT system_prompt FROM agents WHERE name = 'Browser Bot'")
    assert list(saved.system_prompt) == ["You answer from the browser test.\nKeep it short."]


def test_usage_dashboard_draws_tiles_and_the_monthly_chart_offline(page, lab, screenshots, publish):
    open_and_run_all(page, lab, "04_usage.ipynb")
    usage = panel(page, "Usage")
    usage.locator(".vb-chart svg").wait_for()
    usage.locator(".vb-kpi").first.wait_for()
    assert "SPEND" in usage.locator(".vb-kpi").first.inner_text().upper()
    assert usage.locator(".vb-chart svg .mark-rect path").count() > 0  # bars drawn, not an empty frame
    page.set_viewport_size({"width": 1360, "height": 2000})  # the whole dashboard, not the scrolled part
    usage.scroll_into_view_if_needed()
    usage.screenshot(path=str(screenshots / "usage.png"))
    publish(screenshots / "usage.png")


def messages_tile(usage) -> int:
    text = usage.locator(".vb-kpi", has_text="Messages").first.locator(".value").inner_text()
    return int(re.sub(r"[^0-9]", "", text))


def test_two_notebooks_at_once_a_chat_in_one_shows_in_the_others_dashboard(page, lab, screenshots):
    open_and_run_all(page, lab, "04_usage.ipynb")
    usage = panel(page, "Usage")
    usage.locator(".vb-kpi").first.wait_for()
    before = messages_tile(usage)
    other = page.context.new_page()  # a second tab of the same JupyterLab, its own kernel, running meanwhile
    open_and_run_all(other, lab, "03_try_it.ipynb")
    chat = panel(other, "Try it")
    chat.locator(".vb-bubble.assistant:not(.writing)").first.wait_for()  # the notebook's own send, written out
    box = chat.locator('input[placeholder="Type a message and press Enter"]')
    box.fill("Is my refund on its way?")
    box.press("Enter")
    chat.locator(".vb-bubble.assistant:not(.writing)").nth(1).wait_for()
    assert len(lab.api("/api/kernels")) == 2  # both notebooks' kernels are alive
    page.bring_to_front()
    usage.locator("button", has_text="Refresh").click()
    page.wait_for_function(  # both sends (the notebook's and the typed one): two messages each
        """([before]) => [...document.querySelectorAll('.vb-kpi')].some(k =>
             k.innerText.toUpperCase().includes('MESSAGES') &&
             parseInt(k.querySelector('.value').innerText.replace(/[^0-9]/g, '')) >= before + 4)""",
        arg=[before], timeout=10_000)
    assert messages_tile(usage) >= before + 4
    usage.screenshot(path=str(screenshots / "two_notebooks_usage.png"))
    other.close()
