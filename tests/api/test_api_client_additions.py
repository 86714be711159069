"""What the API gained so that the Python client offers everything the embedded one does.

GET /v1/sessions/{id}, paging usage events with ``offset`` (and each event's
channel), ``months`` on the monthly costs, a client's own X-Request-Id, and
Idempotency-Key values in any language (sent as UTF-8).
"""

from __future__ import annotations

import pytest
from api_support import assert_error, make_wav


def _reply(tenant, session_id: str, content: str = "hello", **headers: str):
    response = tenant.post(f"/v1/sessions/{session_id}/messages", json={"content": content}, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response


def test_get_session_answers_the_session_with_its_latest_activity(acme):
    session = acme.session()
    reply = _reply(acme, session["id"]).json()
    response = acme.get(f"/v1/sessions/{session['id']}")
    assert response.status_code == 200
    assert set(response.json()) == {"session"}
    got = response.json()["session"]
    assert {k: v for k, v in got.items() if k != "lastActivityAt"} == {
        k: v for k, v in session.items() if k != "lastActivityAt"}
    assert got["lastActivityAt"] == reply["message"]["createdAt"]


def test_get_session_of_another_tenant_is_session_not_found_like_an_unknown_id(acme, globex):
    session = acme.session()
    foreign = assert_error(globex.get(f"/v1/sessions/{session['id']}"), 404, "SESSION_NOT_FOUND")
    unknown = assert_error(globex.get("/v1/sessions/ses_00000000000000000000"), 404, "SESSION_NOT_FOUND")
    assert foreign["message"] == unknown["message"]


def test_usage_events_page_with_offset(acme):
    session = acme.session()
    for text in ("one", "two", "three"):
        _reply(acme, session["id"], text)
    window = {"from": "2020-01-01", "to": "2099-12-31"}
    every = [e["id"] for e in acme.get("/v1/usage/events", params=window).json()["events"]]
    pages = [acme.get("/v1/usage/events", params={**window, "limit": 2, "offset": offset}).json()
             for offset in (0, 2, 4)]
    assert [[e["id"] for e in page["events"]] for page in pages] == [every[:2], every[2:], []]
    assert [page["count"] for page in pages] == [2, 1, 0]


def test_usage_events_name_their_channel(acme):
    session = acme.session()
    _reply(acme, session["id"])
    voice = acme.post(f"/v1/sessions/{session['id']}/voice", files={"audio": ("a.wav", make_wav(400), "audio/wav")})
    assert voice.status_code == 201, voice.text
    events = acme.get("/v1/usage/events", params={"from": "2020-01-01", "to": "2099-12-31"}).json()["events"]
    assert [e["channel"] for e in events] == ["voice", "chat"]


@pytest.mark.parametrize("params", [{"offset": -1}, {"offset": "x"}, {"offset": 2**53}, {"months": 0},
                                    {"months": 121}, {"months": "twelve"}])
def test_offset_and_months_out_of_range_are_validation_errors(acme, params):
    path = "/v1/usage/monthly" if "months" in params else "/v1/usage/events"
    assert_error(acme.get(path, params=params), 400, "VALIDATION_ERROR")


def test_monthly_answers_the_months_asked_for(acme):
    body = acme.get("/v1/usage/monthly", params={"months": 3}).json()
    assert len(body["monthly"]) == 3
    assert len(acme.get("/v1/usage/monthly").json()["monthly"]) == 12


def test_a_well_formed_x_request_id_names_the_request_and_its_reply(acme, gateway):
    session = acme.session()
    given = "req_0123456789abcdefghjk"
    response = _reply(acme, session["id"], **{"X-Request-Id": given})
    assert response.headers["x-request-id"] == given
    assert response.json()["metadata"]["requestId"] == given
    billed = gateway.sql("SELECT request_id FROM usage_events WHERE session_id = ?", [session["id"]])
    assert list(billed.request_id) == [given]


@pytest.mark.parametrize("foreign", ["3f2a9c1e-1b7d-4c1a-9d2e-8f1a2b3c4d5e", "req_short", "req_0123456789ABCDEFGHJK"])
def test_other_request_ids_are_not_adopted(acme, foreign):
    response = acme.get("/v1/me", headers={"X-Request-Id": foreign})
    assert response.status_code == 200
    assert response.headers["x-request-id"] != foreign and response.headers["x-request-id"].startswith("req_")


def test_an_idempotency_key_in_utf8_is_that_key(acme):
    session = acme.session()
    key = "ключ-🎉"
    responses = [acme.post(f"/v1/sessions/{session['id']}/messages", json={"content": "Hi"},
                           headers={"Idempotency-Key": key.encode("utf-8")}) for _ in range(2)]
    assert [r.status_code for r in responses] == [201, 200]
    assert responses[1].json()["metadata"]["idempotency"] == {"key": key, "replayed": True}


def test_a_latin1_idempotency_key_that_is_not_utf8_still_works(acme):
    session = acme.session()
    responses = [acme.post(f"/v1/sessions/{session['id']}/messages", json={"content": "Hi"},
                           headers={"Idempotency-Key": "café".encode("latin-1")}) for _ in range(2)]
    assert [r.status_code for r in responses] == [201, 200]
    assert responses[1].json()["metadata"]["idempotency"]["key"] == "café"
