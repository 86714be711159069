"""The voice pipeline: speech in, the same billed send path, speech out.

Audio is checked before anything else (malformed audio is INVALID_AUDIO and
costs nothing), transcribed by the deterministic STT of ``audio.py``, sent
through ``MessageSender.send`` with channel ``voice`` (so it is billed and
deduplicated exactly like chat), and the reply is spoken as WAV. A replay of
an idempotency key re-synthesises the same audio: TTS is deterministic, so
nothing but the reply text needs storing.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .audio import AudioError, inspect_audio, synthesize, transcribe, wav_duration_ms
from .errors import InvalidAudioError, PayloadTooLargeError, ValidationError
from .message_input import request_fingerprint, validate_idempotency_key
from .models import VoiceReply

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["MAX_AUDIO_BYTES", "MAX_AUDIO_DURATION_MS", "audio_bytes", "send_voice"]

MAX_AUDIO_BYTES = 10 * 1024 * 1024
MAX_AUDIO_DURATION_MS = 60 * 60 * 1000


def _check_duration(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_AUDIO_DURATION_MS:
        raise ValidationError(f"audioDurationMs is a whole number of milliseconds, 1 to {MAX_AUDIO_DURATION_MS}",
                              details={"field": "audioDurationMs"})
    return value


def audio_bytes(audio: object) -> bytes:
    """The upload as bytes, refused before anything else when it is not bytes or is too large.

    The embedded and the HTTP tenant client both check here, so they refuse alike.
    """
    if not isinstance(audio, (bytes, bytearray, memoryview)):
        raise InvalidAudioError("audio must be bytes", details={"reason": "not_bytes"})
    data = bytes(audio)
    if len(data) > MAX_AUDIO_BYTES:
        raise PayloadTooLargeError(f"audio is limited to {MAX_AUDIO_BYTES // (1024 * 1024)} MB",
                                   details={"limitBytes": MAX_AUDIO_BYTES, "sizeBytes": len(data)})
    return data


async def send_voice(gw: Gateway, tenant_id: str, session_id: str, audio: object, audio_duration_ms: object,
                     idempotency_key: object, request_id: str | None = None, *,
                     key_id: str | None = None) -> VoiceReply:
    data = audio_bytes(audio)
    declared = _check_duration(audio_duration_ms)
    key = validate_idempotency_key(idempotency_key)
    gw.sender.session_state(tenant_id, session_id)  # unknown session before audio work
    try:
        info = inspect_audio(data)
        text = transcribe(data)
    except AudioError as exc:
        raise InvalidAudioError(f"invalid audio: {exc}", details={"reason": exc.reason}) from exc
    input_ms = info.duration_ms if info.duration_ms is not None else declared
    fingerprint = (request_fingerprint("voice", session_id, hashlib.sha256(data).hexdigest(), declared)
                   if key is not None else "")  # only a key's requests are compared
    reply = await gw.sender.send(tenant_id, session_id, text, channel="voice", idempotency_key=key,
                                 fingerprint=fingerprint, request_id=request_id, key_id=key_id)
    reply = reply.model_copy(update={"metadata": reply.metadata.model_copy(update={"channel": "voice"})})
    speech = synthesize(reply.message.content)
    return VoiceReply(session_id=session_id, transcript_text=text, reply=reply, audio=speech,
                      audio_mime="audio/wav", audio_duration_ms=wav_duration_ms(speech),
                      input_audio_duration_ms=input_ms)
