"""A stand-in for a notebook kernel: open the workbench, build the panels, obey one command per stdin line.

Run as a separate Python process by ``test_two_kernels.py``, so that two
processes really share one database through its local service. Commands
(JSON lines) and answers (one JSON line each):

- ``{"do": "send", "text": ...}``: send with the ChatPanel; answers the reply's cost as the dashboard shows it
- ``{"do": "usage"}``: refresh the UsageDashboard; answers the KPI tiles and recent events as drawn
- ``{"do": "agents"}``: refresh the ChatPanel's agent list; answers the agents' names
- ``{"do": "rename", "name": ...}``: edit the first agent in the AgentEditor and save it
- ``{"do": "exit"}``
"""

from __future__ import annotations

import json
import sys

from vbgateway.widgets import AgentEditor, ChatPanel, LoginPanel, UsageDashboard, open_workbench
from vbgateway.widgets.style import fmt_usd


def main(db: str, reports: str) -> None:
    bench = open_workbench(db)
    login = LoginPanel(bench.gateway, api_key=bench.api_key)
    editor, chat = AgentEditor(login), ChatPanel(login)
    dashboard = UsageDashboard(login, reports_dir=reports)
    print(json.dumps({"ready": type(login.client).__name__, "pid": bench.gateway.info.pid}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["do"] == "send":
            chat.message.value = command["text"]
            chat.submit()
            answer = {"cost": fmt_usd(chat.replies[-1].metadata.usage.cost_usd) if chat.replies else None,
                      "status": chat.status.value}
        elif command["do"] == "usage":
            dashboard.refresh()
            answer = {"tiles": dashboard.tiles.value, "events": dashboard.events.value,
                      "status": dashboard.status.value}
        elif command["do"] == "agents":
            chat.refresh()
            answer = {"agents": [label for label, _ in chat.agent.options]}
        elif command["do"] == "rename":
            editor.refresh()
            editor.edit(next(iter(editor.edit_buttons)))
            editor.name.value = command["name"]
            saved = editor.save()
            answer = {"saved": saved.name if saved else None, "status": editor.status.value}
        else:
            break
        answer["failures"] = [repr(f) for p in (login, editor, chat, dashboard) for f in p.failures]
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
