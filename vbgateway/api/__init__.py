"""The /v1 HTTP API (api-contract.md) over a ``Gateway``: ``create_app(gateway)``.

Needs the ``api`` extra (FastAPI, uvicorn, python-multipart); ``vbgateway
serve`` runs it.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
