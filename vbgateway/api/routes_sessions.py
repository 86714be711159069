"""Sessions, chat and voice messages, transcripts.

The send paths are ``async``: they run on the server's event loop, where the
gateway's commits of concurrent requests share one fsync.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Path, Request, UploadFile
from fastapi.routing import APIRoute
from starlette.responses import Response

from ..gateway import Gateway
from ..models import Reply, Transcript
from .envelope import json_response, request_id_of
from .routing import CurrentTenant, error_responses
from .schemas import MessageBody, SessionBody, SessionEnvelope, VoiceResponse
from .wire import model_response, voice_payload

__all__ = ["MESSAGES_PATH", "build_router"]

MESSAGES_PATH = "/v1/sessions/{sessionId}/messages"  # also answered by fastpath.MessagesFastPath

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

    @router.post(MESSAGES_PATH, response_model=Reply,
                 responses=error_responses(400, 404, 409, 502))
    async def send_message(request: Request, session_id: SessionId, body: MessageBody, tenant: CurrentTenant,
                           idempotency_key: IdempotencyKey = None) -> Response:
        """Send a user message; the assistant's reply is billed exactly once."""
        reply = await tenant.send_message(session_id, body.content, idempotency_key=idempotency_key,
                                          request_id=request_id_of(request))
        return model_response(reply)

    @router.get("/v1/sessions/{sessionId}/transcript", response_model=Transcript, responses=error_responses(404))
    async def transcript(session_id: SessionId, tenant: CurrentTenant) -> Response:
        """The session, its messages oldest first, and every provider call made for it."""
        result: Transcript = tenant.transcript(session_id)
        return model_response(result)

    @router.post("/v1/sessions/{sessionId}/voice", response_model=VoiceResponse,
                 responses=error_responses(400, 404, 409, 502))
    async def send_voice(
        request: Request,
        session_id: SessionId,
        tenant: CurrentTenant,
        audio: Annotated[UploadFile, File(description="WAV, WebM, Ogg or MP3; at most 10 MB")],
        audio_duration_ms: Annotated[int | None, Form(alias="audioDurationMs")] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """Recorded speech in, the reply as text and as WAV (base64) out."""
        data = await audio.read()
        voice = await tenant.send_voice(session_id, data, audio_duration_ms, idempotency_key=idempotency_key,
                                        request_id=request_id_of(request))
        return json_response(voice_payload(voice))

    return router
