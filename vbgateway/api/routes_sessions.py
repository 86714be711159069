"""Sessions, chat and voice messages, transcripts.

The send paths are ``async``: they run on the server's event loop, where the
gateway's commits of concurrent requests share one fsync.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Path, Request, UploadFile
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from ..gateway import Gateway
from ..models import Reply, Transcript
from .envelope import json_response, request_id_of
from .messages import MESSAGES_PATH, answer_message, body_lost_response, idempotency_key_text, reply_status
from .routing import CurrentTenant, error_responses
from .schemas import MessageBody, SessionBody, SessionEnvelope, VoiceResponse
from .wire import model_response, voice_payload

__all__ = ["MESSAGES_PATH", "build_router"]

REPLAYED = "The stored reply of an earlier request with this Idempotency-Key; nothing is billed again."
STREAMED = ("The stored reply replayed (JSON), or, with `Accept: text/event-stream`, the reply as Server-Sent "
            "Events: `event: delta` with `{\"text\"}` per piece, then `event: done` with the reply as the JSON "
            "answer holds it, or `event: error` with the error envelope (STREAM_INTERRUPTED: the provider failed "
            "after the first text; nothing billed). Errors before the first text are answered as without streaming.")
EVENT_STREAM = {"text/event-stream": {"schema": {"type": "string"}}}
# The route reads its body itself (messages.answer_message, shared with the fast path), so FastAPI
# cannot see the body's model: it is declared here.
MESSAGE_REQUEST_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": MessageBody.model_json_schema(by_alias=True)}}}}

SessionId = Annotated[str, Path(alias="sessionId")]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key",
    description="Repeat a request with the same key to replay its first response; nothing is billed twice.")]


def build_router(gw: Gateway, route_class: type[APIRoute]) -> APIRouter:
    router = APIRouter(route_class=route_class, tags=["sessions and messages"])

    @router.post("/v1/sessions", status_code=201, response_model=SessionEnvelope, responses=error_responses(400, 404))
    async def create_session(body: SessionBody, tenant: CurrentTenant) -> Response:
        session = await tenant.create_session_async(body.agent_id, body.customer_id, body.metadata)
        return model_response(SessionEnvelope(session=session), 201)

    @router.post(MESSAGES_PATH, status_code=201, response_model=Reply, openapi_extra=MESSAGE_REQUEST_BODY,
                 responses={200: {"model": Reply, "description": STREAMED, "content": EVENT_STREAM},
                            **error_responses(400, 402, 404, 409, 502, 503)})
    async def send_message(request: Request, session_id: SessionId, tenant: CurrentTenant,
                           idempotency_key: IdempotencyKey = None) -> Response:
        """Send a user message; the assistant's reply is billed exactly once.

        201 with a new reply; 200 with the stored reply when the idempotency key was seen before.
        """
        try:
            body = await request.body()
        except ClientDisconnect:
            return body_lost_response(request_id_of(request))
        return await answer_message(tenant, session_id, request.headers.get("content-type"), body, idempotency_key,
                                    request_id_of(request), request.headers.get("accept"))

    @router.get("/v1/sessions/{sessionId}", response_model=SessionEnvelope, responses=error_responses(404))
    async def get_session(session_id: SessionId, tenant: CurrentTenant) -> Response:
        """The session, with the time of its latest reply as ``lastActivityAt``."""
        return model_response(SessionEnvelope(session=tenant.get_session(session_id)))

    @router.get("/v1/sessions/{sessionId}/transcript", response_model=Transcript, responses=error_responses(404))
    async def transcript(session_id: SessionId, tenant: CurrentTenant) -> Response:
        """The session, its messages oldest first, and every provider call made for it."""
        result: Transcript = tenant.transcript(session_id)
        return model_response(result)

    @router.post("/v1/sessions/{sessionId}/voice", status_code=201, response_model=VoiceResponse,
                 responses={200: {"model": VoiceResponse, "description": REPLAYED},
                            **error_responses(400, 402, 404, 409, 502, 503)})
    async def send_voice(
        request: Request,
        session_id: SessionId,
        tenant: CurrentTenant,
        audio: Annotated[UploadFile, File(description="WAV, WebM, Ogg or MP3; at most 10 MB")],
        audio_duration_ms: Annotated[int | None, Form(alias="audioDurationMs")] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """Recorded speech in, the reply as text and as WAV (base64) out.

        201 with a new reply; 200 with the stored reply when the idempotency key was seen before.
        """
        data = await audio.read()
        voice = await tenant.send_voice(session_id, data, audio_duration_ms,
                                        idempotency_key=idempotency_key_text(idempotency_key),
                                        request_id=request_id_of(request))
        return json_response(voice_payload(voice), reply_status(voice.reply.metadata.idempotency.replayed))

    return router
