"""``/docs``: Swagger UI served from the installed package, never from a CDN.

The gateway promises to work offline, and FastAPI's default docs page loads
its scripts from a CDN. When ``swagger-ui-bundle-v2`` (import name
``swagger_ui_bundle``) is installed its files are served under
``/docs/assets``; without it the page falls back to FastAPI's CDN links.
"""

from __future__ import annotations

from typing import TypedDict

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["install_docs"]

ASSETS = "/docs/assets"


class _AssetUrls(TypedDict, total=False):
    """The keyword arguments of ``get_swagger_ui_html`` that point at local assets (absent: FastAPI's CDN)."""

    swagger_js_url: str
    swagger_css_url: str
    swagger_favicon_url: str


def install_docs(app: FastAPI, title: str) -> None:
    urls: _AssetUrls = {}
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        pass
    else:
        app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui-assets")
        urls = {"swagger_js_url": f"{ASSETS}/swagger-ui-bundle.js", "swagger_css_url": f"{ASSETS}/swagger-ui.css",
                "swagger_favicon_url": f"{ASSETS}/favicon-32x32.png"}

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{title} - docs", **urls)
