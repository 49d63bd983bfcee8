"""The console's files, /api/config, /healthz, CORS, and JSON errors everywhere."""

from __future__ import annotations

import httpx
from starlette.requests import Request
from starlette.routing import Route

from lipstream.web.app import create_app
from lipstream.web.server import start_web_server


def test_health_check(web):
    answer = httpx.get(f"{web}/healthz")

    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_the_console_page_is_served_and_the_root_leads_to_it(web, console_dir):
    page = httpx.get(f"{web}/index.html")
    root = httpx.get(f"{web}/")
    followed = httpx.get(f"{web}/", follow_redirects=True)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text == (console_dir / "index.html").read_text()
    assert root.status_code in (302, 307)
    assert root.headers["location"].endswith("/index.html")
    assert followed.text == page.text
    assert httpx.get(f"{web}/app.js").text == "console.log('lipstream');\n"


def test_unknown_paths_are_json_404s(web):
    for path in ("/nothing.js", "/api/nothing", "/api/models/extra"):
        answer = httpx.get(f"{web}{path}")
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "not_found"


def test_config_tells_the_console_where_everything_is(serve, make_settings, openai):
    settings = make_settings(
        websocket_port=8123,
        audio_sample_rate=16000,
        audio_chunk_duration_ms=20,
        openai_realtime_model="gpt-realtime-mini",
        openai_realtime_voice="cedar",
    )
    config = httpx.get(f"{serve(settings).url}/api/config").json()

    assert config["websocket_url"] is None  # the console uses ws://<page host>:websocket_port/
    assert config["websocket_port"] == 8123
    assert config["audio_sample_rate"] == 16000
    assert config["audio_chunk_duration_ms"] == 20
    assert config["openai"] == {
        "available": True,
        "token_url": "/token",
        "realtime_calls_url": f"{openai.url}/v1/realtime/calls",
        "model": "gpt-realtime-mini",
        "voice": "cedar",
    }
    assert isinstance(config["tts"]["available"], bool)
    assert config["webrtc"] == {"offer_url": "/api/webrtc/offer", "ice_servers": []}


def test_config_gives_browsers_the_webrtc_ice_servers(serve, make_settings):
    turn = '[{"urls": "turn:turn.example:3478", "username": "u", "credential": "c"}]'
    settings = make_settings(webrtc_ice_servers="stun:stun.example:3478")
    config = httpx.get(f"{serve(settings).url}/api/config").json()
    assert config["webrtc"]["ice_servers"] == [{"urls": "stun:stun.example:3478"}]
    config = httpx.get(f"{serve(make_settings(webrtc_ice_servers=turn)).url}/api/config").json()
    assert config["webrtc"]["ice_servers"] == [
        {"urls": "turn:turn.example:3478", "username": "u", "credential": "c"}
    ]


def test_config_with_a_public_websocket_url_and_no_key(serve, make_settings):
    settings = make_settings(public_websocket_url="wss://avatar.example/ws", openai_api_key=None)
    config = httpx.get(f"{serve(settings).url}/api/config").json()

    assert config["websocket_url"] == "wss://avatar.example/ws"
    assert config["openai"]["available"] is False


def test_cors_answers_only_the_allowed_origins(serve, make_settings):
    allowed = "http://console.example:5173"
    server = serve(make_settings(cors_allow_origins=(allowed,)))

    ok = httpx.get(f"{server.url}/api/models", headers={"Origin": allowed})
    other = httpx.get(f"{server.url}/api/models", headers={"Origin": "http://evil.example"})
    preflight = httpx.options(
        f"{server.url}/token",
        headers={"Origin": allowed, "Access-Control-Request-Method": "POST"},
    )

    assert ok.headers["access-control-allow-origin"] == allowed
    assert "access-control-allow-origin" not in other.headers
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == allowed
    assert "POST" in preflight.headers["access-control-allow-methods"]


def test_without_an_allow_list_no_other_origin_is_allowed(web):
    answer = httpx.get(f"{web}/api/config", headers={"Origin": "http://elsewhere.example"})

    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


def test_a_failure_inside_the_server_is_a_json_500_without_a_trace(
    serve, make_settings, loop_thread
):
    settings = make_settings()
    app = create_app(settings)

    async def broken(request: Request):
        raise RuntimeError("internal detail /srv/secret/path")

    app.router.routes.insert(0, Route("/broken", broken))
    server = loop_thread.run(start_web_server(settings, app, port=0))
    try:
        answer = httpx.get(f"{server.url}/broken")
    finally:
        loop_thread.run(server.stop())

    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal_error"
    assert "Traceback" not in answer.text
    assert "/srv/secret/path" not in answer.text
