"""``budget set`` and ``limits set`` on a gateway that is serving the database.

Those commands write the database themselves, which a serving gateway holds
(DATABASE_BUSY), and the gateway keeps budgets and limits in memory. So
while one serves it, they ask that gateway instead, through its operator
routes (``/v1/operator/tenants/{id}/budget`` and ``/rate-limit``): its
ledger and limiter change at once and it stores the change. The gateway is
the one given with ``--url`` and ``--operator-secret-file`` (a ``vbgateway
serve --operator-secret-file``), else the database's local service when it
runs (its address and secret are kept next to the database).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import httpx

from ..client.envelope import error_from_answer, unreachable
from ..client.service import find_service, operator_secret, read_secret_file
from ..errors import ValidationError
from ..gateway import Gateway

__all__ = ["ServingGateway", "add_serving_options", "serving_gateway", "tenant_id_named", "tenant_id_of"]

TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ServingGateway:
    url: str
    secret: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One operator request; an error answer is raised as the error the gateway named."""
        try:
            answer = httpx.request(method, f"{self.url}{path}", json=body, timeout=TIMEOUT_S,
                                   headers={"X-Operator-Secret": self.secret})
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from exc
        try:
            data = answer.json() if answer.content else None
        except ValueError:  # not JSON: something else answered (error_from_answer says so)
            data = None
        if answer.status_code >= 400:
            raise error_from_answer(answer.status_code, data, answer.headers.get("x-request-id"))
        return data if isinstance(data, dict) else {}


def add_serving_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None,
                        help="a serving gateway to change instead of the file (with --operator-secret-file)")
    parser.add_argument("--operator-secret-file", default=None, help="that gateway's operator secret (mode 0600)")


def serving_gateway(args: argparse.Namespace) -> ServingGateway | None:
    """The gateway to ask (``--url``, else the database's running local service), or None: write the file."""
    if (args.url is None) != (args.operator_secret_file is None):
        raise ValidationError("--url and --operator-secret-file go together", details={"field": "url"})
    if args.url is not None:
        return ServingGateway(args.url.rstrip("/"), read_secret_file(args.operator_secret_file))
    service = find_service(args.db)
    secret = operator_secret(args.db) if service is not None else None
    return ServingGateway(service.url, secret) if service is not None and secret else None


def tenant_id_named(gw: Gateway, given: str) -> str:
    """An id as given; a name when exactly one tenant has it (``Gateway.tenant_named``)."""
    return given if given.startswith("tnt_") else gw.tenant_named(given).id


def tenant_id_of(args: argparse.Namespace, given: str) -> str:
    """``tenant_id_named`` beside a serving gateway: a name is looked up in the database, read-only."""
    if given.startswith("tnt_"):
        return given
    with Gateway.open_reader(args.db) as gw:
        return tenant_id_named(gw, given)
