"""The web server's door: rate limits, session tokens, and what /metrics counts."""

from __future__ import annotations

import httpx
import pytest
from testkit.prometheus import metric
from testkit.slow_client import trickle_until_closed

from lipstream.access.session_tokens import SessionTokens, TokenRefused

SECRET = "a test secret"


def test_token_calls_past_the_limit_get_429_with_retry_after(serve, make_settings, openai):
    server = serve(make_settings(rate_limit_token="3/minute"))
    codes = [httpx.post(f"{server.url}/token").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    refused = httpx.post(f"{server.url}/token")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    error = refused.json()["error"]
    assert error["code"] == "rate_limited"
    assert "3 per 1 minute" in error["message"]
    # the other limited routes count on their own
    assert httpx.post(f"{server.url}/api/tts", json={"text": ""}).status_code != 429
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "lipstream_token_requests_total", outcome="200") == 3
    assert metric(text, "lipstream_token_requests_total", outcome="429") == 3
    assert metric(text, "lipstream_rate_limited_total", route="/token") == 3


def test_forwarded_for_counts_only_from_a_trusted_proxy(serve, make_settings, openai):
    untrusted = serve(make_settings(rate_limit_token="1/minute"))
    for client in ("10.1.1.1", "10.2.2.2"):  # a client cannot dodge the limit by lying
        status = httpx.post(
            f"{untrusted.url}/token", headers={"X-Forwarded-For": client}
        ).status_code
        assert status == (200 if client == "10.1.1.1" else 429)
    proxied = serve(make_settings(rate_limit_token="1/minute", trusted_proxies="127.0.0.1"))
    answers = [
        httpx.post(f"{proxied.url}/token", headers={"X-Forwarded-For": c}).status_code
        for c in ("6.6.6.6, 10.3.3.3", "10.3.3.3", "10.4.4.4")
    ]
    assert answers == [200, 429, 200]  # the nearest hop that is not a trusted proxy counts


def test_an_empty_rule_means_no_limit(serve, make_settings, openai):
    server = serve(make_settings(rate_limit_token=""))
    assert {httpx.post(f"{server.url}/token").status_code for _ in range(15)} == {200}


def test_session_tokens_are_off_without_a_secret(web):
    answer = httpx.post(f"{web}/api/session")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "session_tokens_off"
    assert httpx.get(f"{web}/api/config").json()["session"]["token_required"] is False


def test_a_session_token_is_signed_short_lived_and_names_where_to_connect(serve, make_settings):
    server = serve(
        make_settings(session_secret=SECRET, session_token_ttl_s=60, websocket_port=8123)
    )
    assert httpx.get(f"{server.url}/api/config").json()["session"]["token_required"] is True
    answer = httpx.post(f"{server.url}/api/session")
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["websocket_url"] == f"ws://127.0.0.1:8123/?token={body['token']}"
    tokens = SessionTokens(SECRET, 60)
    tokens.check(body["token"])  # the frame generator, with the same secret, takes it
    with pytest.raises(TokenRefused, match="not signed by this server"):
        SessionTokens("another secret", 60).check(body["token"])
    second = httpx.post(f"{server.url}/api/session").json()
    assert second["token"] != body["token"]
    assert 55 < second["expires_at"] - __import__("time").time() <= 60


def test_metrics_count_requests_by_route_and_status(web):
    httpx.get(f"{web}/healthz")
    httpx.get(f"{web}/healthz")
    httpx.get(f"{web}/nowhere.html")
    answer = httpx.get(f"{web}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    text = answer.text
    assert metric(text, "lipstream_http_requests_total", route="/healthz", status="200") == 2
    assert metric(text, "lipstream_http_requests_total", route="console", status="404") == 1
    assert metric(text, "lipstream_errors_total", code="404") == 1


def test_headers_sent_byte_by_byte_are_cut_off(serve, make_settings):
    server = serve(make_settings(header_timeout_s=1.0))
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    assert trickle_until_closed(host, int(port), 20.0) < 10.0
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # others are served


def test_a_second_forwarded_for_line_from_the_proxy_is_the_one_that_counts(
    serve, make_settings, openai
):
    """A proxy that adds its own X-Forwarded-For line (instead of extending the client's)."""
    server = serve(make_settings(rate_limit_token="1/minute", trusted_proxies="127.0.0.1"))
    answers = []
    for forged in ("1.1.1.1", "2.2.2.2"):  # the client writes a new address each time
        headers = [("X-Forwarded-For", forged), ("X-Forwarded-For", "10.9.9.9")]
        answers.append(httpx.post(f"{server.url}/token", headers=headers).status_code)
    assert answers == [200, 429]
