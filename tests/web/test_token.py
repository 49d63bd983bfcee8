"""POST /token: an OpenAI Realtime key for the browser, minted with the server's API key."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest


def test_token_answers_both_the_guides_shape_and_openais(web, openai):
    answer = httpx.post(f"{web}/token")

    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    token = answer.json()
    assert openai.expires_at == 1757172600
    assert token["client_secret"] == {
        "value": openai.ephemeral_key,
        "expires_at": "2025-09-06T15:30:00Z",
    }
    assert token["value"] == openai.ephemeral_key
    assert token["expires_at"] == openai.expires_at
    assert token["session"]["model"] == "gpt-realtime"


def test_token_request_carries_the_key_model_voice_and_lifetime(serve, make_settings, openai):
    server = serve(make_settings(openai_realtime_voice="cedar", openai_token_ttl_s=120))

    assert httpx.post(f"{server.url}/token").status_code == 200

    (request,) = openai.requests
    assert request["authorization"] == f"Bearer {openai.key}"
    assert request["body"] == {
        "expires_after": {"anchor": "created_at", "seconds": 120},
        "session": {
            "type": "realtime",
            "model": "gpt-realtime",
            "audio": {"output": {"voice": "cedar"}},
        },
    }


def test_without_a_key_the_token_endpoint_says_to_set_one(serve, make_settings, openai):
    server = serve(make_settings(openai_api_key=None))

    answer = httpx.post(f"{server.url}/token")

    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "openai_not_configured"
    assert "OPENAI_API_KEY" in error["message"]
    assert openai.requests == []


def test_a_refused_key_is_a_502_with_openais_message_and_no_key(serve, make_settings, openai):
    wrong_key = "sk-wrong-9876543210zyxwvu"
    server = serve(make_settings(openai_api_key=wrong_key))

    answer = httpx.post(f"{server.url}/token")

    assert answer.status_code == 502
    error = answer.json()["error"]
    assert error["code"] == "openai_error"
    assert "401" in error["message"]
    assert "Incorrect API key provided" in error["message"]
    assert wrong_key not in answer.text
    assert "9876543210" not in answer.text


def test_an_upstream_server_error_is_passed_on_as_502(web, openai):
    openai.status, openai.answer = 500, {"error": {"message": "The server had an error"}}

    answer = httpx.post(f"{web}/token")

    assert answer.status_code == 502
    assert "The server had an error" in answer.json()["error"]["message"]


def test_an_answer_without_a_key_is_a_502(web, openai):
    openai.status, openai.answer = 200, "<html>maintenance</html>"

    answer = httpx.post(f"{web}/token")

    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "openai_bad_answer"


def test_openai_out_of_reach_is_a_502_that_says_so(serve, make_settings):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    server = serve(make_settings(openai_base_url=f"http://127.0.0.1:{closed}"))

    answer = httpx.post(f"{server.url}/token")

    assert answer.status_code == 502
    error = answer.json()["error"]
    assert error["code"] == "openai_unreachable"
    assert f"cannot reach OpenAI at http://127.0.0.1:{closed}" in error["message"]


def test_a_slow_openai_is_a_504(serve, make_settings, openai):
    openai.delay_s = 2.0
    server = serve(make_settings(), openai_timeout_s=0.3)

    answer = httpx.post(f"{server.url}/token", timeout=10)

    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "openai_timeout"


def test_the_api_key_never_reaches_a_log_line_or_an_answer(
    serve, make_settings, openai, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    good = serve(make_settings())
    wrong_key = "sk-wrong-abcdefghijklmnop"
    bad = serve(make_settings(openai_api_key=wrong_key))

    answers = [httpx.post(f"{good.url}/token"), httpx.post(f"{bad.url}/token")]
    openai.status, openai.answer = 400, {"error": {"message": f"bad key {openai.key}"}}
    answers.append(httpx.post(f"{good.url}/token"))

    assert [a.status_code for a in answers] == [200, 502, 502]
    printed = capfd.readouterr()
    for secret in (openai.key, wrong_key):
        assert secret not in caplog.text
        assert secret not in printed.out + printed.err
        for answer in answers:
            assert secret not in answer.text
            assert all(secret not in value for value in answer.headers.values())
    assert "minted a Realtime key" in caplog.text  # the logs were captured
    assert openai.ephemeral_key not in caplog.text


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_the_token_endpoint_takes_only_post(web, method):
    answer = httpx.request(method, f"{web}/token")

    assert answer.status_code == 405
    assert answer.json()["error"]["code"] == "method_not_allowed"
