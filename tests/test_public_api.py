"""The public surface: exactly the names we promise, and errors as api-contract.md lists them."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import vbgateway
from vbgateway import errors
from vbgateway.errors import GatewayError

PUBLIC_NAMES = {
    "Agent", "BreakerPolicy", "Clock", "Gateway", "GatewayError", "PriceTable", "Reply", "RetryPolicy", "Session",
    "SystemClock", "Tenant", "TenantClient", "VirtualClock", "VoiceReply", "__version__", "connect",
}


def all_modules() -> list[str]:
    names = ["vbgateway"]
    names += [m.name for m in pkgutil.walk_packages(vbgateway.__path__, prefix="vbgateway.")]
    return sorted(names)


def test_top_level_all_is_sorted():
    assert vbgateway.__all__ == sorted(vbgateway.__all__)


def test_top_level_all_is_exactly_the_public_names():
    assert set(vbgateway.__all__) == PUBLIC_NAMES
    assert len(vbgateway.__all__) == len(PUBLIC_NAMES)


def test_every_public_name_is_importable_from_the_package():
    for name in vbgateway.__all__:
        assert getattr(vbgateway, name) is not None, name


def test_version_is_a_string():
    assert isinstance(vbgateway.__version__, str) and vbgateway.__version__


@pytest.mark.parametrize("module_name", all_modules())
def test_every_module_defines_all_and_every_name_in_it_exists(module_name):
    module = importlib.import_module(module_name)
    assert isinstance(getattr(module, "__all__", None), (list, tuple)), f"{module_name} has no __all__"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == [], f"{module_name}.__all__ names missing objects: {missing}"
    assert len(set(module.__all__)) == len(module.__all__), f"{module_name}.__all__ has duplicates"


def test_gateway_error_carries_code_message_details_and_http_status():
    error = GatewayError("agent not found", code="AGENT_NOT_FOUND", details={"agentId": "agt_x"}, http_status=404)
    assert (error.code, error.message, error.details, error.http_status) == (
        "AGENT_NOT_FOUND", "agent not found", {"agentId": "agt_x"}, 404)
    assert str(error) == "agent not found"
    assert error.to_dict() == {"code": "AGENT_NOT_FOUND", "message": "agent not found",
                               "details": {"agentId": "agt_x"}}


def test_gateway_error_details_default_to_an_empty_dict():
    error = GatewayError("boom")
    assert error.details == {}
    assert (error.code, error.http_status) == ("INTERNAL_ERROR", 500)


@pytest.mark.parametrize("cls, code, status", [
    (errors.AuthenticationError, "INVALID_API_KEY", 401),
    (errors.ValidationError, "VALIDATION_ERROR", 400),
    (errors.InvalidAudioError, "INVALID_AUDIO", 400),
    (errors.AgentNotFoundError, "AGENT_NOT_FOUND", 404),
    (errors.SessionNotFoundError, "SESSION_NOT_FOUND", 404),
    (errors.NotFoundError, "NOT_FOUND", 404),
    (errors.IdempotencyConflictError, "IDEMPOTENCY_CONFLICT", 409),
    (errors.PayloadTooLargeError, "PAYLOAD_TOO_LARGE", 413),
    (errors.AllProvidersFailedError, "ALL_PROVIDERS_FAILED", 502),
    (errors.InternalError, "INTERNAL_ERROR", 500),
])
def test_each_error_class_has_the_contracts_code_and_status(cls, code, status):
    error = cls("refused", details={"k": "v"})
    assert isinstance(error, GatewayError)
    assert (error.code, error.http_status, error.message, error.details) == (code, status, "refused", {"k": "v"})


def test_every_error_class_is_a_gateway_error_with_its_own_code():
    classes = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]
    assert all(issubclass(cls, GatewayError) for cls in classes)
    codes = [cls.default_code for cls in classes if cls is not GatewayError]
    assert len(codes) == len(set(codes))
