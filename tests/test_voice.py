"""Specification of the voice pipeline: speech in, the same billed send path, speech out.

Audio is checked before anything is written or billed; the mock STT is
deterministic; the reply comes back as a real WAV; voice turns are billed and
deduplicated exactly like chat, with channel 'voice'.
"""

from __future__ import annotations

import io
import random
import struct
import wave
from decimal import Decimal

import pytest

from vbgateway import GatewayError
from vbgateway.audio import synthesize, transcribe
from vbgateway.voice import MAX_AUDIO_BYTES

pytestmark = pytest.mark.tenant_clients

SPEECH = synthesize("hello I would like to check my invoice please")  # 8 words: 3200 ms


@pytest.fixture
def session(acme, agent):
    return acme.create_session(agent.id, customer_id="caller-1")


def provider_calls(gw) -> int:
    return sum(provider.calls for provider in gw.providers.values())


def usage_count(gw) -> int:
    return int(gw.sql("SELECT count(*) AS n FROM usage_events")["n"][0])


def wav_info(data: bytes) -> tuple[int, int, int, int]:
    """(channels, sample width, frame rate, duration in ms) as the standard library reads them."""
    with wave.open(io.BytesIO(data)) as w:
        return w.getnchannels(), w.getsampwidth(), w.getframerate(), round(w.getnframes() * 1000 / w.getframerate())


# --------------------------------------------------------------------------- a voice turn


def test_send_voice_returns_the_transcript_of_the_audio(acme, session, run) -> None:
    voice = run(acme.send_voice(session.id, SPEECH))

    assert voice.transcript_text == transcribe(SPEECH)
    assert voice.transcript_text.strip()
    assert voice.session_id == session.id


def test_the_transcript_is_deterministic_for_the_same_audio(acme, agent, run) -> None:
    first = acme.create_session(agent.id)
    second = acme.create_session(agent.id)

    heard = [run(acme.send_voice(s.id, SPEECH)).transcript_text for s in (first, second)]

    assert heard[0] == heard[1]


def test_the_transcript_is_what_the_user_message_says(gw, acme, session, run) -> None:
    voice = run(acme.send_voice(session.id, SPEECH))

    rows = gw.sql("SELECT role, content FROM messages WHERE request_id = ? ORDER BY position",
                  [voice.reply.metadata.request_id])
    assert list(rows["role"]) == ["user", "assistant"]
    assert list(rows["content"]) == [voice.transcript_text, voice.reply.message.content]


def test_a_voice_reply_is_billed_once_with_channel_voice(gw, acme, session, run) -> None:
    voice = run(acme.send_voice(session.id, SPEECH))

    usage = gw.sql("SELECT message_id, request_id, channel, cost_usd::VARCHAR AS cost FROM usage_events")
    assert list(usage["message_id"]) == [voice.reply.message.id]
    assert list(usage["channel"]) == ["voice"]
    assert list(usage["request_id"]) == [voice.reply.metadata.request_id]
    assert Decimal(usage["cost"][0]) == voice.reply.metadata.usage.cost_usd
    assert voice.reply.metadata.channel == "voice"


def test_a_voice_turn_stores_both_messages_with_channel_voice(gw, acme, session, run) -> None:
    voice = run(acme.send_voice(session.id, SPEECH))

    messages = gw.sql("SELECT channel, request_id FROM messages")
    assert list(messages["channel"]) == ["voice", "voice"]
    assert set(messages["request_id"]) == {voice.reply.metadata.request_id}


def test_the_reply_audio_is_a_valid_wav_whose_length_follows_the_reply(acme, session, run) -> None:
    voice = run(acme.send_voice(session.id, SPEECH))

    words = len(voice.reply.message.content.split())
    channels, width, rate, duration_ms = wav_info(voice.audio)
    assert (channels, width, rate) == (1, 2, 16000)
    assert duration_ms == round(words * 1000 / 2.5)
    assert voice.audio_duration_ms == duration_ms
    assert voice.audio_mime == "audio/wav"


def test_the_reply_audio_is_the_speech_of_the_reply_text(acme, session, run) -> None:
    voice = run(acme.send_voice(session.id, SPEECH))

    assert voice.audio == synthesize(voice.reply.message.content)


def test_the_input_duration_is_read_from_the_wav_header(acme, session, run) -> None:
    voice = run(acme.send_voice(session.id, synthesize("one two three four five")))

    assert voice.input_audio_duration_ms == 2000


def test_the_wav_header_wins_over_a_declared_duration(acme, session, run) -> None:
    voice = run(acme.send_voice(session.id, synthesize("one two three four five"), audio_duration_ms=9999))

    assert voice.input_audio_duration_ms == 2000


def test_an_8khz_wav_from_the_wave_module_is_accepted_and_timed(acme, session, run) -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(2 * 8000 * 3 // 4))  # 750 ms of silence
    voice = run(acme.send_voice(session.id, buffer.getvalue()))

    assert voice.input_audio_duration_ms == 750


COMPRESSED = {
    "webm": b"\x1a\x45\xdf\xa3" + bytes(range(200)),
    "ogg": b"OggS" + bytes(range(200)),
    "mp3-id3": b"ID3\x04\x00" + bytes(range(200)),
    "mp3-frame": b"\xff\xfb\x90\x64" + bytes(range(200)),
}


@pytest.mark.parametrize("audio", COMPRESSED.values(), ids=COMPRESSED.keys())
def test_for_compressed_audio_the_declared_duration_is_used(gw, acme, session, run, audio: bytes) -> None:
    voice = run(acme.send_voice(session.id, audio, audio_duration_ms=4321))

    assert voice.input_audio_duration_ms == 4321
    assert voice.transcript_text == transcribe(audio)
    assert usage_count(gw) == 1


def test_for_compressed_audio_without_a_declared_duration_the_input_duration_is_unknown(acme, session, run) -> None:
    voice = run(acme.send_voice(session.id, COMPRESSED["ogg"]))

    assert voice.input_audio_duration_ms is None


# --------------------------------------------------------------------------- refusals change nothing


def _random_bytes() -> bytes:
    data = random.Random(20260101).randbytes(4096)
    assert data[:1] not in (b"R", b"O", b"I", b"\x1a", b"\xff")  # not a container we accept
    return data


def _truncated_wav() -> bytes:
    return SPEECH[:1000]


def _wav_without_samples() -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16) + b"data" + struct.pack("<I", 0)
    return b"RIFF" + struct.pack("<I", len(body)) + body


INVALID_AUDIO = {
    "empty": b"",
    "random-bytes": _random_bytes(),
    "text": b"Hello, this is not audio at all, just some text.\n",
    "truncated-wav": _truncated_wav(),
    "wav-header-only": SPEECH[:40],
    "riff-not-wave": b"RIFF" + struct.pack("<I", 100) + b"AVI " + bytes(100),
    "wav-without-samples": _wav_without_samples(),
    "mp3-frame-sync-only": b"\xff\xfb\x90",
}


@pytest.mark.parametrize("audio", INVALID_AUDIO.values(), ids=INVALID_AUDIO.keys())
def test_malformed_audio_is_invalid_audio_and_nothing_is_written_or_billed(gw, acme, session, run, row_counts,
                                                                         audio: bytes) -> None:
    before, calls = row_counts(), provider_calls(gw)

    with pytest.raises(GatewayError) as raised:
        run(acme.send_voice(session.id, audio))

    assert (raised.value.code, raised.value.http_status) == ("INVALID_AUDIO", 400)
    assert row_counts() == before
    assert provider_calls(gw) == calls


@pytest.mark.parametrize("audio", ["a string", None, 12345, [1, 2, 3], {"audio": b"RIFF"}],
                         ids=["str", "None", "int", "list", "dict"])
def test_audio_that_is_not_bytes_is_invalid_audio_and_nothing_is_written(gw, acme, session, run, row_counts,
                                                                        audio: object) -> None:
    before = row_counts()

    with pytest.raises(GatewayError) as raised:
        run(acme.send_voice(session.id, audio))  # type: ignore[arg-type]

    assert (raised.value.code, raised.value.http_status) == ("INVALID_AUDIO", 400)
    assert row_counts() == before


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytes_like_audio_is_accepted(acme, session, run, kind) -> None:
    voice = run(acme.send_voice(session.id, kind(SPEECH)))

    assert voice.transcript_text == transcribe(SPEECH)


def test_audio_over_10_mb_is_payload_too_large_and_nothing_is_written(gw, acme, session, run, row_counts) -> None:
    before, calls = row_counts(), provider_calls(gw)
    too_big = SPEECH + bytes(MAX_AUDIO_BYTES + 1 - len(SPEECH))

    with pytest.raises(GatewayError) as raised:
        run(acme.send_voice(session.id, too_big))

    assert (raised.value.code, raised.value.http_status) == ("PAYLOAD_TOO_LARGE", 413)
    assert MAX_AUDIO_BYTES == 10 * 1024 * 1024
    assert row_counts() == before
    assert provider_calls(gw) == calls


@pytest.mark.parametrize("duration", [-1, 0, "1000", True, 1.5, 60 * 60 * 1000 + 1],
                         ids=["negative", "zero", "string", "bool", "float", "over-an-hour"])
def test_a_bad_declared_duration_is_a_validation_error_and_nothing_is_written(gw, acme, session, run, row_counts,
                                                                             duration: object) -> None:
    before = row_counts()

    with pytest.raises(GatewayError) as raised:
        run(acme.send_voice(session.id, SPEECH, audio_duration_ms=duration))  # type: ignore[arg-type]

    assert (raised.value.code, raised.value.http_status) == ("VALIDATION_ERROR", 400)
    assert row_counts() == before


# --------------------------------------------------------------------------- idempotency


def test_same_key_and_same_audio_replays_the_voice_turn_without_billing_again(gw, acme, session, run) -> None:
    first = run(acme.send_voice(session.id, SPEECH, idempotency_key="voice-1"))
    billed = usage_count(gw)

    again = run(acme.send_voice(session.id, SPEECH, idempotency_key="voice-1"))

    assert first.reply.metadata.idempotency.replayed is False
    assert again.reply.metadata.idempotency.replayed is True
    assert again.reply.message.id == first.reply.message.id
    assert again.transcript_text == first.transcript_text
    assert again.audio == first.audio
    assert again.audio_duration_ms == first.audio_duration_ms
    assert again.reply.metadata.channel == "voice"
    assert usage_count(gw) == billed == 1


def test_a_replayed_voice_turn_writes_no_new_messages(gw, acme, session, run) -> None:
    run(acme.send_voice(session.id, SPEECH, idempotency_key="voice-1"))
    messages = int(gw.sql("SELECT count(*) AS n FROM messages")["n"][0])

    run(acme.send_voice(session.id, SPEECH, idempotency_key="voice-1"))

    assert int(gw.sql("SELECT count(*) AS n FROM messages")["n"][0]) == messages == 2


def test_same_key_with_different_audio_is_an_idempotency_conflict(gw, acme, session, run, row_counts) -> None:
    run(acme.send_voice(session.id, SPEECH, idempotency_key="voice-1"))
    before = row_counts()

    with pytest.raises(GatewayError) as raised:
        run(acme.send_voice(session.id, synthesize("something else entirely"), idempotency_key="voice-1"))

    assert (raised.value.code, raised.value.http_status) == ("IDEMPOTENCY_CONFLICT", 409)
    assert row_counts() == before


def test_a_voice_key_reused_for_a_chat_message_is_an_idempotency_conflict(acme, session, run) -> None:
    voice = run(acme.send_voice(session.id, SPEECH, idempotency_key="shared-key"))

    with pytest.raises(GatewayError) as raised:
        run(acme.send_message(session.id, voice.transcript_text, idempotency_key="shared-key"))

    assert raised.value.code == "IDEMPOTENCY_CONFLICT"


# --------------------------------------------------------------------------- sessions


def test_an_unknown_session_is_session_not_found_before_any_audio_work(gw, acme, run, row_counts) -> None:
    before = row_counts()

    with pytest.raises(GatewayError) as raised:
        run(acme.send_voice("ses_doesnotexist0000000", b"this is not audio"))

    assert (raised.value.code, raised.value.http_status) == ("SESSION_NOT_FOUND", 404)
    assert row_counts() == before


def test_another_tenants_session_is_session_not_found(globex, session, run) -> None:
    with pytest.raises(GatewayError) as raised:
        run(globex.send_voice(session.id, SPEECH))

    assert raised.value.code == "SESSION_NOT_FOUND"
