"""POST /api/tts: speech from text as a WAV file, with the offline voice."""

from __future__ import annotations

import io
import wave

import httpx
import numpy as np
import pytest

from lipstream.web import speech


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
        return samples.astype(np.float32) / 32768.0, wav.getframerate()


@pytest.fixture(scope="module")
def needs_voice() -> None:
    if speech.missing_packages():
        pytest.skip(f"offline speech needs {', '.join(speech.missing_packages())}")


def test_text_becomes_audible_speech(web, needs_voice):
    answer = httpx.post(
        f"{web}/api/tts", json={"text": "Hello from the lipstream web server."}, timeout=60
    )

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "audio/wav"
    samples, rate = decode_wav(answer.content)
    assert rate == int(answer.headers["x-sample-rate"]) == 22050
    assert len(samples) / rate > 0.3
    assert np.sqrt(np.mean(samples**2)) > 0.01  # not silence
    assert np.abs(samples).max() > 0.2


def test_a_higher_speed_speaks_faster(web, needs_voice):
    text = {"text": "One, two, three, four, five."}
    slow = httpx.post(f"{web}/api/tts", json={**text, "speed": 0.75}, timeout=60)
    fast = httpx.post(f"{web}/api/tts", json={**text, "speed": 1.5}, timeout=60)

    assert slow.status_code == fast.status_code == 200
    slow_s = len(decode_wav(slow.content)[0])
    fast_s = len(decode_wav(fast.content)[0])
    assert fast_s < 0.75 * slow_s


@pytest.mark.parametrize(
    ("body", "code", "named"),
    [
        (b"{not json", "bad_json", "JSON"),
        (b'["hello"]', "bad_json", "object"),
        (b"{}", "bad_text", "text"),
        (b'{"text": "   "}', "bad_text", "text"),
        (b'{"text": 42}', "bad_text", "text"),
        (b'{"text": "' + b"a" * 1001 + b'"}', "text_too_long", "1000"),
        (b'{"text": "hi", "speed": 5}', "bad_speed", "speed"),
        (b'{"text": "hi", "speed": "fast"}', "bad_speed", "speed"),
    ],
)
def test_bad_requests_are_400_naming_the_problem(web, body, code, named):
    answer = httpx.post(
        f"{web}/api/tts", content=body, headers={"Content-Type": "application/json"}
    )

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == code
    assert named in error["message"]


def test_an_oversized_body_is_refused(web):
    answer = httpx.post(f"{web}/api/tts", content=b"x" * 200_000)

    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "body_too_large"


def test_without_the_speech_packages_tts_is_503_and_config_says_so(web, monkeypatch):
    # As on a server installed without the avatar extra.
    monkeypatch.setattr(speech, "_REQUIRED", (("no-such-tts", "lipstream_no_such_tts"),))

    answer = httpx.post(f"{web}/api/tts", json={"text": "Hello."})
    config = httpx.get(f"{web}/api/config").json()

    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "tts_unavailable"
    assert "no-such-tts" in error["message"]
    assert config["tts"]["available"] is False
