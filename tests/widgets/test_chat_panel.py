"""ChatPanel: asynchronous sends, reply metadata, idempotent replays, voice, and failures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vbgateway.audio import synthesize
from vbgateway.providers.simulated import VendorProfile


def upload(panel, data: bytes, name: str = "question.wav") -> None:
    panel.upload.value = ({"name": name, "type": "audio/wav", "size": len(data), "content": memoryview(data),
                           "last_modified": datetime(2026, 3, 1, tzinfo=UTC)},)


def bubbles(panel) -> list[str]:
    return [child.value for child in panel.conversation.children if isinstance(child.value, str)]


def test_a_send_returns_at_once_and_the_reply_arrives_later(chat, clock, gw, count):
    async def drive():
        chat.message.value = "Where is my invoice?"
        chat.send_button.click()
        # the click only scheduled the send: the kernel is free, progress and the reply's typing bubble show
        assert chat.task is not None and not chat.task.done()
        assert chat.busy and "vb-spinner" in chat.progress.value and chat.send_button.disabled
        assert len(chat.conversation.children) == 2 and chat.message.value == ""
        assert "vb-typing" in bubbles(chat)[1] and "Where is my invoice?" in bubbles(chat)[0]
        return await chat.task

    reply = clock.run(drive())
    assert reply is not None and not chat.busy and chat.progress.value == ""
    assert reply.message.content in bubbles(chat)[-1] and "vb-typing" not in bubbles(chat)[-1]
    assert count(gw, "messages", f"session_id = '{chat.session.id}'") == 2
    assert count(gw, "usage_events", f"session_id = '{chat.session.id}'") == 1


def test_enter_in_the_message_box_sends(chat, clock):
    async def drive():
        chat.message.value = "Hello"
        chat.message._handle_custom_msg({"event": "submit"}, [])  # what the browser sends on Enter
        return await chat.task

    assert clock.run(drive()) is not None and "Hello" in bubbles(chat)[0]


def test_each_reply_shows_provider_tokens_cost_and_latency(chat):
    chat.message.value = "Hi"
    chat.send_button.click()  # no running loop here: the panel runs the send to completion
    reply = chat.replies[-1]
    meta = bubbles(chat)[-1]
    usage = reply.metadata.usage
    assert reply.metadata.provider_used in meta
    assert f"tokens {usage.tokens_in} in / {usage.tokens_out} out" in meta
    assert "cost $0.0" in meta and " ms" in meta and "fallback" not in meta


def test_a_fallback_reply_is_marked(chat, gw):
    gw.providers["vendorA"].profile = VendorProfile(failure_rate=1.0)  # the simulator's way to stage an outage
    chat.message.value = "Hi"
    chat.send_button.click()
    assert chat.replies[-1].metadata.fallback_used
    assert "fallback used (vendorA failed)" in bubbles(chat)[-1] and "4 attempts" in bubbles(chat)[-1]


def test_send_again_with_the_key_replays_without_a_new_charge(chat, gw, count):
    chat.use_key.value = True
    chat.message.value = "Refund please"
    chat.send_button.click()
    key = chat.replies[-1].metadata.idempotency.key
    assert key and key in chat.key_label.value and not chat.resend_button.disabled
    billed = count(gw, "usage_events")
    chat.resend_button.click()
    replay = chat.replies[-1]
    assert replay.metadata.idempotency.replayed and replay.message.id == chat.replies[-2].message.id
    assert "replayed · no new charge" in bubbles(chat)[-1]
    assert count(gw, "usage_events") == billed


def test_voice_shows_transcript_reply_and_plays_the_answer(chat, gw, count):
    upload(chat, synthesize("Where is my order?"))
    chat.voice_button.click()
    voice = chat.voice_replies[-1]
    assert f"“{voice.transcript_text}”" in bubbles(chat)[0]
    assert voice.reply.message.content in bubbles(chat)[1] and "voice" in bubbles(chat)[1]
    assert chat.audio.format == "wav" and chat.audio.value == voice.audio and voice.audio[:4] == b"RIFF"
    assert chat.audio.layout.display is None  # the player is shown once there is an answer to play
    assert count(gw, "usage_events", "channel = 'voice'") == 1


def test_unreadable_audio_is_an_error_in_the_panel(chat, gw, count):
    upload(chat, b"not audio at all", "noise.mp3")
    chat.voice_button.click()
    assert "INVALID_AUDIO" in chat.status.value and count(gw, "usage_events") == 0


def test_all_vendors_down_shows_the_attempts_and_keeps_the_conversation(chat, gw, count):
    chat.message.value = "First"
    chat.send_button.click()
    before = bubbles(chat)
    for provider in gw.providers.values():
        provider.profile = VendorProfile(failure_rate=1.0)
    chat.message.value = "Second"
    chat.send_button.click()
    assert "ALL_PROVIDERS_FAILED" in chat.status.value
    assert chat.status.value.count("SERVER_ERROR") == 6  # three tries each of vendorA and vendorB
    assert bubbles(chat)[:2] == before and "not delivered" in bubbles(chat)[2]
    assert count(gw, "usage_events") == 1 and not chat.busy


def test_choosing_another_agent_starts_a_new_conversation(chat):
    chat.message.value = "Hi"
    chat.send_button.click()
    first = chat.session
    chat.agent.value = chat.agent.options[1][1]
    assert chat.session is None and chat.conversation.children == ()
    chat.message.value = "Hi again"
    chat.send_button.click()
    assert chat.session.id != first.id and chat.session.agent_id == chat.agent.options[1][1]


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_message_sends_nothing(chat, text):
    chat.message.value = text
    chat.send_button.click()
    assert chat.session is None and chat.conversation.children == ()


def test_a_keyed_voice_message_replays_with_the_same_audio_and_no_new_charge(chat, gw, count):
    chat.use_key.value = True
    upload(chat, synthesize("Cancel my subscription"))
    chat.voice_button.click()
    first = chat.voice_replies[-1]
    billed = count(gw, "usage_events")
    chat.resend_button.click()
    replay = chat.voice_replies[-1]
    assert replay.reply.metadata.idempotency.replayed and replay.audio == first.audio
    assert "replayed · no new charge" in bubbles(chat)[-1] and count(gw, "usage_events") == billed


def test_logged_out_the_chat_asks_to_log_in_and_sends_nothing(login, chat):
    login.logout()
    chat.message.value = "Hi"
    chat.send_button.click()
    assert chat.agent.options == () and "INVALID_API_KEY" in chat.status.value
