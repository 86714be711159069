"""Specification tests for vbgateway.audio: upload validation, mock STT and mock TTS."""

from __future__ import annotations

import io
import struct
import wave
from array import array

import pytest

from vbgateway import audio
from vbgateway.audio import AudioError, AudioInfo, inspect_audio, synthesize, transcribe, wav_duration_ms

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is optional
    given = None


def _chunk(chunk_id: bytes, body: bytes, declared_size: int | None = None) -> bytes:
    size = len(body) if declared_size is None else declared_size
    return chunk_id + struct.pack("<I", size) + body + (b"\x00" if len(body) % 2 else b"")


def _fmt(codec: int = 1, channels: int = 1, rate: int = 8000, byte_rate: int | None = None, bits: int = 16) -> bytes:
    align = channels * bits // 8
    byte_rate = rate * align if byte_rate is None else byte_rate
    return _chunk(b"fmt ", struct.pack("<HHIIHH", codec, channels, rate, byte_rate, align, bits))


def _wav(*chunks: bytes, form: bytes = b"WAVE") -> bytes:
    """A RIFF file with a correct RIFF size around the given chunks."""
    body = form + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


# 8000 Hz mono 16-bit: 16000 bytes/s, so 1600 bytes of samples is 100 ms.
VALID_WAV = _wav(_fmt(), _chunk(b"data", bytes(1600)))


# --- synthesize -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [("", 400), ("Hello", 400), ("Hello there, how are you?", 2000), ("one two three four five six seven", 2800)],
)
def test_synthesize_writes_16khz_mono_16bit_wav_lasting_words_over_2_5_seconds(text: str, expected_ms: int) -> None:
    with wave.open(io.BytesIO(synthesize(text))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert round(w.getnframes() * 1000 / w.getframerate()) == expected_ms


def test_synthesize_longer_text_gives_longer_audio() -> None:
    assert wav_duration_ms(synthesize("short reply")) < wav_duration_ms(synthesize("a much longer reply to the user"))


def test_synthesize_is_deterministic() -> None:
    assert synthesize("Your invoice has been paid.") == synthesize("Your invoice has been paid.")


def test_synthesize_is_audible_not_silence() -> None:
    with wave.open(io.BytesIO(synthesize("Hello world"))) as w:
        samples = array("h", w.readframes(w.getnframes()))
    assert max(abs(s) for s in samples) > 1000


def test_synthesize_starts_and_ends_softly_to_avoid_clicks() -> None:
    with wave.open(io.BytesIO(synthesize("Hello"))) as w:
        samples = array("h", w.readframes(w.getnframes()))
    assert abs(samples[0]) < 100 and abs(samples[-1]) < 100


def test_synthesize_honours_sample_rate_and_speaking_rate() -> None:
    audio = synthesize("one two three", sample_rate=8000, words_per_second=3.0)
    with wave.open(io.BytesIO(audio)) as w:
        assert w.getframerate() == 8000
    assert wav_duration_ms(audio) == 1000


@pytest.mark.parametrize("kwargs", [{"sample_rate": 0}, {"words_per_second": 0}, {"words_per_second": -1.0}])
def test_synthesize_rejects_nonsensical_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        synthesize("hello", **kwargs)  # type: ignore[arg-type]


def test_synthesize_output_round_trips_through_inspect_audio_and_wav_duration_ms() -> None:
    audio = synthesize("Thanks for calling, goodbye")
    expected = AudioInfo(format="wav", mime_type="audio/wav", duration_ms=1600, size_bytes=len(audio))
    assert inspect_audio(audio) == expected
    assert wav_duration_ms(audio) == 1600


# --- inspect_audio: accepted inputs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fmt", "mime"),
    [
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01", "webm", "audio/webm"),
        (b"OggS\x00\x02" + bytes(20), "ogg", "audio/ogg"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "mp3", "audio/mpeg"),
        (b"\xff\xfb\x90\x64" + bytes(8), "mp3", "audio/mpeg"),
    ],
)
def test_inspect_audio_recognises_compressed_formats_by_magic_bytes(data: bytes, fmt: str, mime: str) -> None:
    assert inspect_audio(data) == AudioInfo(format=fmt, mime_type=mime, duration_ms=None, size_bytes=len(data))


def test_inspect_audio_reads_wav_duration_from_header() -> None:
    assert inspect_audio(VALID_WAV).duration_ms == 100


def test_inspect_audio_walks_past_odd_sized_chunks_with_padding() -> None:
    wav = _wav(_chunk(b"LIST", b"INFOabc"), _fmt(), _chunk(b"junk", b"x"), _chunk(b"data", bytes(1600)))
    assert inspect_audio(wav).duration_ms == 100


def test_inspect_audio_accepts_non_pcm_wav() -> None:
    float_wav = _wav(_fmt(codec=3, bits=32), _chunk(b"data", bytes(3200)))  # IEEE float, which `wave` refuses
    assert inspect_audio(float_wav).duration_ms == 100


# --- inspect_audio: rejected inputs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(bytes([0x13, 0x37, 0x00, 0x42, 0x99, 0x10, 0x7E, 0x01] * 8), "unsupported_format", id="random"),
        pytest.param(b"hello world", "unsupported_format", id="text"),
        pytest.param(VALID_WAV[:30], "too_short", id="wav-truncated-in-header"),
        pytest.param(b"RIFF\x04\x00", "too_short", id="riff-stub"),
        pytest.param(b"ID3", "too_short", id="mp3-stub"),
        pytest.param(_wav(_fmt(), _chunk(b"data", bytes(64)), form=b"AVI "), "unsupported_format", id="riff-not-wave"),
        pytest.param(VALID_WAV[:-800], "malformed_wav", id="data-larger-than-file"),
        pytest.param(
            _wav(_fmt(), _chunk(b"data", bytes(16), declared_size=1600)), "malformed_wav", id="data-size-beyond-riff"
        ),
        pytest.param(_wav(_chunk(b"LIST", bytes(40)), _fmt())[:60], "malformed_wav", id="truncated-in-fmt-chunk"),
        pytest.param(_wav(_fmt(byte_rate=0), _chunk(b"data", bytes(64))), "malformed_wav", id="byte-rate-0"),
        pytest.param(_wav(_fmt(channels=0), _chunk(b"data", bytes(64))), "malformed_wav", id="zero-channels"),
        pytest.param(_wav(_fmt(rate=0, byte_rate=2), _chunk(b"data", bytes(64))), "malformed_wav", id="rate-0"),
        pytest.param(_wav(_chunk(b"fmt ", bytes(8)), _chunk(b"data", bytes(64))), "malformed_wav", id="fmt-too-small"),
        pytest.param(_wav(_chunk(b"data", bytes(64))), "malformed_wav", id="no-fmt-chunk"),
        pytest.param(_wav(_fmt(), _chunk(b"LIST", bytes(64))), "malformed_wav", id="no-data-chunk"),
        pytest.param(_wav(_fmt(), _chunk(b"data", b""), _chunk(b"LIST", bytes(8))), "empty", id="no-samples"),
    ],
)
def test_inspect_audio_rejects_bad_uploads_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(AudioError) as excinfo:
        inspect_audio(data)
    assert excinfo.value.reason == reason
    assert str(excinfo.value)  # a human-readable message too


def test_audio_error_is_a_value_error() -> None:
    assert issubclass(AudioError, ValueError)


def test_wav_duration_ms_rejects_non_wav_audio() -> None:
    with pytest.raises(AudioError) as excinfo:
        wav_duration_ms(b"OggS" + bytes(20))
    assert excinfo.value.reason == "unsupported_format"


# --- transcribe -----------------------------------------------------------------------------


def test_transcribe_is_deterministic_and_non_empty() -> None:
    audio = synthesize("where is my order")
    text = transcribe(audio)
    assert text.strip() and text == transcribe(audio)


def test_transcribe_differs_for_different_audio() -> None:
    transcripts = {transcribe(synthesize(" ".join(["word"] * n))) for n in range(1, 11)}
    assert len(transcripts) > 1


def test_transcribe_gives_a_clip_the_same_text_whether_it_was_heard_before_or_not() -> None:
    short = synthesize("please reset my password")
    long = synthesize(" ".join(["order"] * 60))  # 24 s: over the size of clips that are remembered
    assert len(short) <= audio._TRANSCRIPT_CACHE_BYTES < len(long)
    for clip in (short, long):
        first = transcribe(clip)
        assert first == audio._transcript(clip)  # what the SHA-256 of the samples maps to
        assert transcribe(bytearray(clip)) == transcribe(bytes(memoryview(clip))) == transcribe(clip) == first


@pytest.mark.parametrize(
    "data", [b"", b"hello world", VALID_WAV[:30], _wav(_fmt(byte_rate=0), _chunk(b"data", bytes(64)))]
)
def test_transcribe_rejects_malformed_audio(data: bytes) -> None:
    with pytest.raises(AudioError):
        transcribe(data)


# --- robustness -----------------------------------------------------------------------------


def _inspect_never_crashes(data: bytes) -> None:
    try:
        info = inspect_audio(data)
    except AudioError:
        return
    assert isinstance(info, AudioInfo) and info.size_bytes == len(data)


if given is not None:

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=256))
    def test_inspect_audio_on_arbitrary_bytes_returns_info_or_raises_audio_error(data: bytes) -> None:
        _inspect_never_crashes(data)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=128), st.integers(0, len(VALID_WAV)))
    def test_inspect_audio_on_corrupted_wav_returns_info_or_raises_audio_error(noise: bytes, cut: int) -> None:
        _inspect_never_crashes(VALID_WAV[:12] + noise + VALID_WAV[cut:])
