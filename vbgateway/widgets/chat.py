"""ChatPanel ("Try it"): chat or speak with an agent and see how each reply was obtained and billed.

Sends are coroutines scheduled on the kernel's running loop (``Panel.schedule``):
the button callback returns at once, the kernel stays responsive, and the
reply is drawn when it arrives. ``send_text`` / ``send_audio`` are the plain
coroutines behind the buttons, so tests and notebooks can await them.

Text replies are streamed (``stream_message``): the assistant bubble appears
with the user's, its text grows as the provider writes it (``LiveReply``),
and the reply's metadata line replaces the typing indicator at the end.
A stream cut off after some text keeps that text, marked as interrupted.
Voice replies come whole (``send_voice``).
"""

from __future__ import annotations

import uuid
from collections.abc import Coroutine
from typing import Any

import ipywidgets as widgets

from ..errors import AllProvidersFailedError, GatewayError, StreamInterruptedError
from ..models import Reply, Session, VoiceReply
from ..streaming import TextDelta
from .base import Panel, guarded, guarded_async
from .chat_stream import LiveReply
from .chat_view import attempts_table, bubble_html, reply_meta_html
from .login import AnyTenantClient, LoginPanel
from .style import esc, gap

__all__ = ["AUDIO_TYPES", "ChatPanel"]

AUDIO_TYPES = ".wav,.webm,.ogg,.mp3,audio/wav,audio/webm,audio/ogg,audio/mpeg"
LABEL = {"description_width": "initial"}


def auto() -> widgets.Layout:
    """Buttons as wide as their label (ipywidgets' fixed default width truncates them)."""
    return widgets.Layout(width="auto")


class ChatPanel(Panel):
    """Agent picker, conversation bubbles, text and voice input, idempotency controls."""

    def __init__(self, login: LoginPanel, customer_id: str = "customer_123") -> None:
        super().__init__("Try it", "Talk to an agent through the real gateway: every reply is billed per token.")
        self.login = login
        self.session: Session | None = None
        self.replies: list[Reply] = []
        self.voice_replies: list[VoiceReply] = []
        self.last_keyed: dict[str, Any] | None = None
        self.busy = False
        self.agent = widgets.Dropdown(description="Agent", style=LABEL, layout=widgets.Layout(width="380px"))
        self.customer = widgets.Text(value=customer_id, description="Customer id", style=LABEL, continuous_update=False,
                                     layout=widgets.Layout(width="300px"))
        self.new_button = widgets.Button(description="New conversation", icon="refresh", layout=auto())
        self.conversation = widgets.VBox(layout=widgets.Layout(min_height="80px"))
        self.conversation.add_class("vb-chat")
        self.message = widgets.Text(placeholder="Type a message and press Enter", continuous_update=True,
                                    layout=widgets.Layout(flex="1"))
        self.send_button = widgets.Button(description="Send", button_style="primary", icon="paper-plane")
        self.progress = widgets.HTML()
        self.use_key = widgets.Checkbox(description="use idempotency key", indent=False,
                                        layout=widgets.Layout(width="180px"))
        self.key_label = widgets.HTML()
        self.resend_button = widgets.Button(description="Send again with this key", icon="repeat", disabled=True,
                                           layout=auto())
        self.upload = widgets.FileUpload(accept=AUDIO_TYPES, multiple=False, description="Audio file", layout=auto())
        self.voice_button = widgets.Button(description="Send audio", icon="microphone", layout=auto())
        self.audio = widgets.Audio(format="wav", autoplay=False, controls=True, layout=widgets.Layout(display="none"))
        self.send_button.on_click(lambda _: self.submit())
        self.message.on_msg(self._on_text_msg)  # Enter in the box ("submit" event), without the deprecated on_submit
        self.new_button.on_click(lambda _: self.reset())
        self.resend_button.on_click(lambda _: self.resend())
        self.voice_button.on_click(lambda _: self.submit_audio())
        self.agent.observe(lambda _: self.reset(), "value")
        self.customer.observe(lambda _: self.reset(), "value")
        self.set_body(
            gap(widgets.HBox([self.agent, self.customer, self.new_button],
                             layout=widgets.Layout(flex_flow="row wrap")), 8),
            self.conversation, self.progress,
            widgets.HBox([self.message, self.send_button]),
            gap(widgets.HBox([self.use_key, self.key_label, self.resend_button],
                             layout=widgets.Layout(align_items="center")), 8),
            gap(widgets.HBox([self.upload, self.voice_button, self.audio],
                             layout=widgets.Layout(align_items="center")), 8),
        )
        login.on_change(lambda _: self.refresh())
        self.refresh()

    @property
    def client(self) -> AnyTenantClient | None:
        return self.login.client

    def run_now(self, coro: Any) -> Any:
        return self.login.gateway.clock.run(coro)

    # ------------------------------------------------------------------ setup
    @guarded
    def refresh(self) -> None:
        """Reload the agent list (after login, logout or editing agents)."""
        if self.client is None:
            self.agent.options = []
            self.reset()
            self.show("Log in to try your agents.", "info")
            return
        current = self.agent.value
        self.agent.options = [(f"{a.name} · {a.primary_provider}"
                               + (f" → {a.fallback_provider}" if a.fallback_provider else ""), a.id)
                              for a in self.client.list_agents()]
        ids = [v for _, v in self.agent.options]
        self.agent.value = current if current in ids else (ids[0] if ids else None)
        self.show("")

    @guarded
    def reset(self) -> None:
        """Start a new conversation: the next message opens a new session."""
        self.session = None
        self.conversation.children = ()
        self.last_keyed = None
        self.resend_button.disabled = True
        self.key_label.value = ""
        self.audio.layout.display = "none"

    def _session(self) -> Session:
        if self.client is None:
            raise GatewayError("log in first", code="INVALID_API_KEY", http_status=401)
        if self.agent.value is None:
            raise GatewayError("create an agent first (Agents panel)", code="VALIDATION_ERROR", http_status=400)
        if self.session is None:
            self.session = self.client.create_session(self.agent.value, customer_id=self.customer.value.strip() or None,
                                                      metadata={"source": "notebook"})
        return self.session

    def _key(self) -> str | None:
        if not self.use_key.value:
            return None
        key = f"try-{uuid.uuid4().hex[:16]}"
        self.key_label.value = f'<span class="vb-sub">key</span> <code>{esc(key)}</code>'
        return key

    # ------------------------------------------------------------------ buttons
    def _on_text_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "submit":
            self.submit()

    @guarded
    def submit(self) -> None:
        """Send what is in the message box (button or Enter)."""
        text = self.message.value.strip()
        if not text or self.busy:
            return
        self.message.value = ""
        self._launch(self.begin_text(text, self._key()))

    @guarded
    def resend(self) -> None:
        """Repeat the last keyed request with the same key: the gateway replays it, billing nothing."""
        if self.last_keyed is None or self.busy:
            return
        last = self.last_keyed
        if last["channel"] == "voice":
            self._launch(self.begin_audio(last["audio"], last["name"], last["key"]))
        else:
            self._launch(self.begin_text(last["text"], last["key"]))

    @guarded
    def submit_audio(self) -> None:
        """Send the uploaded file as speech."""
        if not self.upload.value or self.busy:
            self.show("Choose an audio file (wav, webm, ogg or mp3) first.", "info")
            return
        item = self.upload.value[0]
        data, name = bytes(item["content"]), str(item.get("name", "audio"))
        self.upload.value = ()
        self._launch(self.begin_audio(data, name, self._key()))

    def _launch(self, pending: Coroutine[Any, Any, Any] | None) -> None:
        if pending is not None:
            self.schedule(pending)

    # ------------------------------------------------------------------ the coroutines
    def _append(self, html: str) -> widgets.HTML:
        bubble = widgets.HTML(html)
        self.conversation.children = (*self.conversation.children, bubble)
        return bubble

    def _set_busy(self, busy: bool, what: str = "") -> None:
        self.busy = busy
        self.send_button.disabled = self.voice_button.disabled = self.resend_button.disabled = busy
        if not busy and self.last_keyed is None:
            self.resend_button.disabled = True
        self.progress.value = f'<div class="vb-sub"><span class="vb-spinner"></span>{esc(what)}</div>' if busy else ""

    def _failed(self, bubble: widgets.HTML, text: str, exc: GatewayError) -> None:
        bubble.value = bubble_html("user", text, failed=True, note="not delivered, nothing billed")
        self._show_failure(exc)

    def _show_failure(self, exc: GatewayError) -> None:
        """The error in the status line, with the provider attempts when the gateway gave them."""
        attempts = isinstance(exc, AllProvidersFailedError | StreamInterruptedError)
        raw = attempts_table(exc.details.get("attempts", [])) if attempts else ""
        self.show(f"{exc.code}: {exc.message}", "error", raw)

    async def send_text(self, text: str, key: str | None = None) -> Reply | None:
        """Send one chat message and draw the reply (or the failure); awaitable from a notebook cell."""
        pending = self.begin_text(text, key)
        return await pending if pending is not None else None

    async def send_audio(self, data: bytes, name: str = "audio", key: str | None = None) -> VoiceReply | None:
        """Send speech: show what was heard, the reply, and play the spoken reply."""
        pending = self.begin_audio(data, name, key)
        return await pending if pending is not None else None

    @guarded
    def begin_text(self, text: str, key: str | None = None) -> Coroutine[Any, Any, Reply | None]:
        """Draw the user bubble, the reply's bubble (typing) and the progress now; return the coroutine
        that streams the reply into it."""
        session = self._session()
        self.show("")
        bubble = self._append(bubble_html("user", text))
        live = LiveReply(self.login.gateway.clock)
        self.conversation.children = (*self.conversation.children, live.widget)
        self._set_busy(True, "Waiting for the agent…")
        return self._finish_text(session, bubble, live, text, key)

    @guarded
    def begin_audio(self, data: bytes, name: str, key: str | None = None) -> Coroutine[Any, Any, VoiceReply | None]:
        session = self._session()
        self.show("")
        bubble = self._append(bubble_html("user", f"🎤 {name}", note="transcribing…"))
        self._set_busy(True, "Transcribing and waiting for the agent…")
        return self._finish_audio(session, bubble, data, name, key)

    @guarded_async
    async def _finish_text(self, session: Session, bubble: widgets.HTML, live: LiveReply, text: str,
                           key: str | None) -> Reply | None:
        reply: Reply | None = None
        try:
            async for item in self.client.stream_message(session.id, text,  # type: ignore[union-attr]
                                                         idempotency_key=key):
                if isinstance(item, TextDelta):
                    live.add(item.text)
                else:
                    reply = item
            if reply is None:  # both clients end a stream with its reply or raise: kept as a clear failure
                raise StreamInterruptedError("the reply stream ended without its reply")
        except GatewayError as exc:
            if live.parts:
                self._interrupted(bubble, live, text, exc, key)
            else:  # refused or failed before any text: shown as a send that was never answered
                self.conversation.children = tuple(c for c in self.conversation.children if c is not live.widget)
                self._failed(bubble, text, exc)
            return None
        finally:
            self._set_busy(False)
        self._keep_key(key, {"channel": "chat", "text": text, "key": key})
        self.replies.append(reply)
        live.finish(reply)
        return reply

    def _interrupted(self, bubble: widgets.HTML, live: LiveReply, text: str, exc: GatewayError,
                     key: str | None) -> None:
        """Some text came, then the stream failed: the partial reply stays, marked, and the error is shown."""
        live.interrupt(exc, keyed=key is not None)
        if isinstance(exc, StreamInterruptedError):  # nothing was stored: the message is not in the conversation
            bubble.value = bubble_html("user", text, failed=True, note="not stored: its reply was interrupted")
        self._show_failure(exc)
        self._keep_key(key, {"channel": "chat", "text": text, "key": key})  # the same key sends it again

    def _keep_key(self, key: str | None, request: dict[str, Any]) -> None:
        """Remember a keyed request for "Send again with this key" (a replay, or a retry after an interruption)."""
        if key:
            self.last_keyed = request
            self.resend_button.disabled = False

    @guarded_async
    async def _finish_audio(self, session: Session, bubble: widgets.HTML, data: bytes, name: str,
                            key: str | None) -> VoiceReply | None:
        try:
            voice = await self.client.send_voice(session.id, data, idempotency_key=key)  # type: ignore[union-attr]
        except GatewayError as exc:
            self._failed(bubble, f"🎤 {name}", exc)
            return None
        finally:
            self._set_busy(False)
        self._keep_key(key, {"channel": "voice", "audio": data, "name": name, "key": key})
        bubble.value = bubble_html("user", f"🎤 “{voice.transcript_text}”", note=f"transcribed from {esc(name)}")
        self.replies.append(voice.reply)
        self.voice_replies.append(voice)
        self._append(bubble_html("assistant", voice.reply.message.content) + reply_meta_html(voice.reply))
        self.audio.value = voice.audio  # the player beside the upload button: the latest spoken answer
        self.audio.layout.display = None
        return voice
