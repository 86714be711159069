"""Audio side of the voice pipeline: validate uploads, mock STT, mock TTS.

Uploaded audio comes from untrusted clients, so ``inspect_audio`` checks it
before anything else touches it and reports problems as ``AudioError`` with a
machine-readable ``reason`` that the HTTP layer can map to a 4xx response.
Speech-to-text and text-to-speech are deterministic mocks: the gateway must be
testable offline and reproducibly, yet the TTS output is a real, audible WAV so
clients can exercise their playback path end to end.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import wave
from array import array
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["AudioError", "AudioInfo", "inspect_audio", "synthesize", "transcribe", "wav_duration_ms"]

_MIME = {"wav": "audio/wav", "webm": "audio/webm", "ogg": "audio/ogg", "mp3": "audio/mpeg"}
_MIN_WAV_BYTES = 44  # RIFF header (12) + fmt chunk (8 + 16) + data chunk header (8)
_MIN_OTHER_BYTES = 4

_PHRASES = (
    "Hi, I'd like to check the status of my last invoice.",
    "Can you help me reset my password? I'm locked out of my account.",
    "I was charged twice this month and I'd like a refund for one of them.",
    "What are your opening hours during the holidays?",
    "My order hasn't arrived yet, could you tell me where it is?",
    "I want to upgrade my plan to the premium tier.",
    "How do I change the delivery address on my order?",
    "The app keeps crashing when I try to upload a photo.",
    "Could you cancel my subscription at the end of this billing period?",
    "I'd like to speak to a human agent, please.",
    "Is there a discount for annual billing?",
    "Thanks, that solved my problem. Have a nice day!",
)


class AudioError(ValueError):
    """Audio was rejected; ``reason`` is stable for callers, the message is for humans."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    """What the gateway knows about an upload without decoding it."""

    format: str
    mime_type: str
    duration_ms: int | None
    size_bytes: int


def _detect_format(data: bytes) -> str | None:
    """Identify the container by magic bytes; ``None`` if not one we accept."""
    if data.startswith(b"RIFF"):
        return "wav"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if data.startswith(b"OggS"):
        return "ogg"
    if data.startswith(b"ID3") or (len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def _parse_wav(data: bytes) -> int:
    """Walk the RIFF chunk list and return the duration in ms.

    Done by hand rather than with ``wave`` because ``wave`` tolerates truncated
    data chunks yet refuses valid non-PCM (e.g. float or A-law) files; we only
    need the header to be structurally sound, not the codec to be PCM.
    """
    if len(data) < 12:
        raise AudioError("too_short", f"RIFF file is only {len(data)} bytes")
    if data[8:12] != b"WAVE":
        raise AudioError("unsupported_format", f"RIFF form type {data[8:12]!r} is not WAVE")
    if len(data) < _MIN_WAV_BYTES:
        raise AudioError("too_short", f"WAV file is only {len(data)} bytes (minimum {_MIN_WAV_BYTES})")
    (riff_size,) = struct.unpack_from("<I", data, 4)
    end = 8 + riff_size
    if end > len(data):
        raise AudioError("malformed_wav", f"RIFF size says {end} bytes but file has {len(data)}")
    fmt: tuple[int, ...] | None = None
    data_size: int | None = None
    pos = 12
    while pos + 8 <= end:
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if body + size > end:
            raise AudioError("malformed_wav", f"chunk {chunk_id!r} at offset {pos} runs past the end of the file")
        if chunk_id == b"fmt " and fmt is None:
            if size < 16:
                raise AudioError("malformed_wav", f"fmt chunk is {size} bytes, need at least 16")
            fmt = struct.unpack_from("<HHIIHH", data, body)
        elif chunk_id == b"data" and data_size is None:
            data_size = size
        pos = body + size + (size & 1)  # chunks are word-aligned; a missing final pad byte is tolerated
    if pos < end:
        raise AudioError("malformed_wav", f"{end - pos} stray bytes after the last chunk")
    if fmt is None:
        raise AudioError("malformed_wav", "WAV has no fmt chunk")
    if data_size is None:
        raise AudioError("malformed_wav", "WAV has no data chunk")
    _codec, channels, sample_rate, byte_rate, _align, _bits = fmt
    if channels == 0 or sample_rate == 0 or byte_rate == 0:
        raise AudioError(
            "malformed_wav",
            f"impossible WAV parameters: channels={channels} sample_rate={sample_rate} byte_rate={byte_rate}",
        )
    if data_size == 0:
        raise AudioError("empty", "WAV contains no audio samples")
    return round(data_size * 1000 / byte_rate)


def inspect_audio(data: bytes) -> AudioInfo:
    """Validate uploaded audio and describe it, raising ``AudioError`` if unusable.

    Only WAV is parsed (its header is trivial and gives an exact duration);
    compressed formats are recognised by magic bytes but not decoded, so their
    duration is ``None``.
    """
    if not data:
        raise AudioError("empty", "audio upload is empty")
    data = bytes(data)
    fmt = _detect_format(data)
    if fmt is None:
        raise AudioError("unsupported_format", "unrecognised audio format (expected WAV, WebM, Ogg or MP3)")
    duration: int | None = None
    if fmt == "wav":
        duration = _parse_wav(data)
    elif len(data) < _MIN_OTHER_BYTES:
        raise AudioError("too_short", f"{fmt} file is only {len(data)} bytes")
    return AudioInfo(format=fmt, mime_type=_MIME[fmt], duration_ms=duration, size_bytes=len(data))


def wav_duration_ms(data: bytes) -> int:
    """Duration from the WAV header; raises ``AudioError`` if ``data`` is not a valid WAV."""
    info = inspect_audio(data)
    if info.duration_ms is None:
        raise AudioError("unsupported_format", f"expected WAV audio, got {info.format}")
    return info.duration_ms


def transcribe(data: bytes) -> str:
    """Mock STT: map the audio's sha256 to a fixed support phrase.

    Hashing keeps it deterministic (same upload, same transcript, so tests and
    replays are stable) while different uploads usually give different text.
    """
    inspect_audio(data)
    if len(data) <= _TRANSCRIPT_CACHE_BYTES:
        return _transcript_cached(bytes(data))
    return _transcript(data)


_TRANSCRIPT_CACHE_BYTES = 256 * 1024  # clips up to this size (8 s of 16 kHz speech) are remembered


@lru_cache(maxsize=256)
def _transcript_cached(data: bytes) -> str:
    """The transcript of a short clip heard before: a client re-sending a clip, or a simulation's clips.

    A bytes object keeps its hash, so the same clip sent again costs a
    dictionary lookup instead of a SHA-256 over its samples.
    """
    return _transcript(data)


def _transcript(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return _PHRASES[int.from_bytes(digest[:8], "big") % len(_PHRASES)]


@lru_cache(maxsize=512)
def _tone_parts(period: int, ramp: int) -> tuple[bytes, bytes, bytes]:
    """(attack, one period, release) of a voice-like tone as native int16 bytes.

    The wave is a fundamental plus two harmonics, so it sounds buzzy rather
    than like a test beep. Tones are a whole number of periods long, so the
    faded-in start and faded-out end depend only on (period, ramp) and can be
    cached; the middle is plain byte tiling. This keeps ``math.sin`` and
    per-sample Python loops out of the hot path (100 words in a few ms).
    """
    peak = 0.3 * 32767 / 1.75  # 1 + 0.5 + 0.25 harmonic weights; stay well below clipping
    step = 2 * math.pi / period
    one = array("h", (int(peak * (math.sin(i * step) + 0.5 * math.sin(2 * i * step) + 0.25 * math.sin(3 * i * step)))
                      for i in range(period)))
    tiled = one * (ramp // period + 1)
    attack = array("h", (int(tiled[j] * j / ramp) for j in range(ramp)))
    tail = tiled[len(tiled) - ramp :]
    release = array("h", (int(tail[j] * (ramp - 1 - j) / ramp) for j in range(ramp)))
    return attack.tobytes(), one.tobytes(), release.tobytes()


def _word_period(word: str, sample_rate: int) -> int:
    """Period in samples for a word's tone: stable per word, in the 110-330 Hz voice range."""
    h = int.from_bytes(hashlib.sha256(word.lower().encode("utf-8")).digest()[:4], "big")
    return max(2, round(sample_rate / (110 + h % 221)))


_SPOKEN_CACHE_CHARS = 240  # replies up to this long (about 40 words, 16 s of speech) are cached spoken


def synthesize(text: str, *, sample_rate: int = 16000, words_per_second: float = 2.5) -> bytes:
    """Mock TTS: a mono 16-bit PCM WAV with one soft tone per word.

    Duration is ``max(1, words) / words_per_second`` seconds (rounded to whole
    ms) so clients see realistic playback lengths; tones rather than silence so
    a human tester can hear that audio actually played. The output depends on
    the text alone, so short replies (the simulated vendors' templates, a
    replayed reply) are rendered once and then served from a bounded cache.
    """
    if len(text) <= _SPOKEN_CACHE_CHARS:
        return _synthesize_cached(text, sample_rate, words_per_second)
    return _synthesize(text, sample_rate, words_per_second)


@lru_cache(maxsize=160)  # bounded: at most ~160 x 0.5 MB
def _synthesize_cached(text: str, sample_rate: int, words_per_second: float) -> bytes:
    return _synthesize(text, sample_rate, words_per_second)


def _synthesize(text: str, sample_rate: int, words_per_second: float) -> bytes:
    if sample_rate <= 0:
        raise ValueError("sample_rate must be positive")
    if not words_per_second > 0:
        raise ValueError("words_per_second must be positive")
    words = text.split() or [""]
    duration_ms = round(len(words) * 1000 / words_per_second)
    total = round(duration_ms * sample_rate / 1000)
    ramp_len = max(1, sample_rate // 100)  # 10 ms attack/release avoids clicks
    out = bytearray()
    for i, word in enumerate(words):
        slot = (i + 1) * total // len(words) - i * total // len(words)
        period = _word_period(word, sample_rate)
        tone_len = (slot - slot // 5) // period * period  # last fifth (at least) of the slot is a pause
        ramp = min(ramp_len, tone_len // 2)
        if ramp:
            attack, one, release = _tone_parts(period, ramp)
            body = one * (tone_len // period)
            out += attack + body[2 * ramp : 2 * (tone_len - ramp)] + release
        out += bytes(2 * (slot - (tone_len if ramp else 0)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(out)  # native byte order; wave converts to little-endian itself
    return buf.getvalue()
