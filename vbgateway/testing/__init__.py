"""What tests and benchmarks put around the gateway: a local OpenAI-compatible upstream (``upstream.py``)."""

from __future__ import annotations

__all__: list[str] = []
