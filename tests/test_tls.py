"""TLS on all three services with certificates made in the test: HTTPS, WSS, gRPC over TLS."""

from __future__ import annotations

import json
import ssl
import time

import grpc
import httpx
import pytest
import trustme
from conftest import OPEN_TIMEOUT_S
from websockets.sync.client import connect

from lipstream.audio.files import read_audio_file
from lipstream.service import lipsync_pb2 as pb
from lipstream.service import lipsync_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A test CA and a server certificate for 127.0.0.1 and localhost, as files."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    with open(paths["cert"], "wb") as chain:
        for blob in server.cert_chain_pems:
            chain.write(blob.bytes())
    return paths


@pytest.fixture(scope="module")
def tls_system(models_dir, certificates):
    from conftest import BackgroundSystem

    system = BackgroundSystem(
        models_dir=models_dir,
        tls_cert_file=certificates["cert"],
        tls_key_file=certificates["key"],
        grpc_tls_ca_file=certificates["ca"],
    )
    yield system
    system.stop()


def test_the_web_server_answers_https_only(tls_system, certificates):
    assert tls_system.web_url.startswith("https://")
    trusted = ssl.create_default_context(cafile=str(certificates["ca"]))
    answer = httpx.get(f"{tls_system.web_url}/healthz", verify=trusted)
    assert answer.status_code == 200
    with pytest.raises(httpx.HTTPError):  # an unknown CA is refused by the client
        httpx.get(f"{tls_system.web_url}/healthz")
    plain = tls_system.web_url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plain}/healthz")


def test_a_wss_session_makes_frames_over_grpc_tls(tls_system, certificates, speech_wav):
    context = ssl.create_default_context(cafile=str(certificates["ca"]))
    url = tls_system.websocket_url
    assert url.startswith("wss://")
    speech = read_audio_file(speech_wav, 24000).samples[:12000]  # half a second: 13 frames
    with connect(url, ssl=context, open_timeout=OPEN_TIMEOUT_S) as ws:
        ws.send(json.dumps({"type": "configure", "push_frames": True}))
        ws.send(speech.astype("<i2").tobytes())
        ws.send(json.dumps({"type": "end_of_speech"}))
        frames, deadline = [], time.monotonic() + 30
        while len(frames) < 13 and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=deadline - time.monotonic()))
            if message["type"] == "current_frame":
                frames.append(message["frame_index"])
            assert message["type"] != "error", message
        assert frames == list(range(13))  # the mouths came from the lip-sync service, over TLS


def test_the_lipsync_service_speaks_grpc_over_tls_only(tls_system, certificates):
    address = tls_system.system.lipsync.address
    credentials = grpc.ssl_channel_credentials(certificates["ca"].read_bytes())
    with grpc.secure_channel(address, credentials) as channel:
        models = pb_grpc.LipSyncServiceStub(channel).ListModels(pb.ListModelsRequest(), timeout=10)
        assert "demo" in [m.name for m in models.models]
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as refused:
        pb_grpc.LipSyncServiceStub(channel).ListModels(pb.ListModelsRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_list_of_instances_over_tls_checks_the_name_given(tls_system, certificates):
    import asyncio

    from lipstream.errors import ServiceUnavailable
    from lipstream.frames.lipsync_client import LipSyncClient

    port = tls_system.system.lipsync.port
    target = f"ipv4:127.0.0.1:{port},127.0.0.1:{port}"
    credentials = grpc.ssl_channel_credentials(certificates["ca"].read_bytes())

    async def models(server_name: str) -> list[str]:
        client = LipSyncClient(target, 5000, tls=credentials, tls_server_name=server_name)
        try:
            return sorted(await client.models(refresh=True))
        finally:
            await client.close()

    assert "demo" in asyncio.run(models("localhost"))
    with pytest.raises(ServiceUnavailable):  # a name the certificate does not carry
        asyncio.run(models("lipsync.example.org"))
