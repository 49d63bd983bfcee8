"""POST /api/webrtc/offer refuses what is not a call it can answer, and says why."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiortc import RTCPeerConnection

from lipstream.webrtc.peer import parse_ice_servers


def offer_sdp(*kinds: str) -> str:
    async def make() -> str:
        pc = RTCPeerConnection()
        for kind in kinds:
            pc.addTransceiver(kind, direction="sendrecv" if kind == "audio" else "recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(asyncio.wait_for(make(), 30))


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"not json", 400, "must be a JSON object"),
        (b'{"sdp": "v=0\\r\\n", "type": "offer", "record": "yes"}', 400, '"record" must be'),
        (b'{"sdp": "hello", "type": "offer"}', 400, '"sdp" must be'),
        (b'{"sdp": "v=0\\r\\n", "type": "answer"}', 400, '"type" must be "offer"'),
        (b'{"sdp": "v=0\\r\\n", "type": "offer", "model": 5}', 400, '"model" must be'),
        (b'{"sdp": "v=0\\r\\nm=x", "type": "offer", "model": "demo"}', 400, "could not be read"),
    ],
)
def test_a_bad_offer_is_refused_with_the_reason(running_system, body, status, says):
    answer = httpx.post(f"{running_system.web_url}/api/webrtc/offer", content=body, timeout=30)
    assert answer.status_code == status
    assert says in answer.json()["error"]["message"]


def test_an_offer_without_the_voice_or_the_video_or_for_no_model_is_refused(running_system):
    for kinds in (("video",), ("audio",)):
        offer = {"sdp": offer_sdp(*kinds), "type": "offer", "model": "demo"}
        answer = httpx.post(f"{running_system.web_url}/api/webrtc/offer", json=offer, timeout=60)
        assert answer.status_code == 400
        assert "must have audio (the voice) and video" in answer.text
    offer = {"sdp": offer_sdp("audio", "video"), "type": "offer", "model": "nobody"}
    answer = httpx.post(f"{running_system.web_url}/api/webrtc/offer", json=offer, timeout=60)
    assert answer.status_code == 404 and "nobody" in answer.json()["error"]["message"]
    offer = {"sdp": offer_sdp("audio", "video"), "type": "offer", "record": True}
    answer = httpx.post(f"{running_system.web_url}/api/webrtc/offer", json=offer, timeout=60)
    assert answer.status_code == 400 and "RECORDINGS_DIR is not set" in answer.text


def test_ice_servers_are_read_from_json_or_urls_and_none_by_default():
    assert parse_ice_servers("") == []
    assert [s.urls for s in parse_ice_servers("stun:a:3478, turn:b:3478")] == [
        "stun:a:3478",
        "turn:b:3478",
    ]
    (turn,) = parse_ice_servers('[{"urls": "turn:b:3478", "username": "u", "credential": "c"}]')
    assert (turn.urls, turn.username, turn.credential) == ("turn:b:3478", "u", "c")
    with pytest.raises(ValueError, match="WEBRTC_ICE_SERVERS must be"):
        parse_ice_servers('[{"url": "x"}]')
