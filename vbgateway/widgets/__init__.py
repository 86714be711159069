"""ipywidgets panels over the gateway: log in, edit agents, try them out, watch usage and breakers.

Each panel is a thin layer over plain methods (``login()``, ``save()``,
``send_text()``, ``refresh()``, ``export()``) so notebooks, tests and buttons
all drive the same code. Panels share one ``LoginPanel``::

    from vbgateway.widgets import open_workbench, LoginPanel, ChatPanel
    bench = open_workbench("../data/vbgateway.duckdb")
    login = LoginPanel(bench.gateway, api_key=bench.api_key)
    ChatPanel(login)
"""

from .agents import AgentEditor
from .chat import ChatPanel
from .health import HealthPanel
from .login import LoginPanel
from .usage import UsageDashboard
from .workbench import Workbench, open_workbench

__all__ = ["AgentEditor", "ChatPanel", "HealthPanel", "LoginPanel", "UsageDashboard", "Workbench", "open_workbench"]
