"""Settings: a bad value stops the start with a message naming it and what is accepted."""

from __future__ import annotations

import pytest

from lipstream.errors import InvalidInput
from lipstream.settings import load_settings


@pytest.mark.parametrize(
    "values, message",
    [
        ({"websocket_port": "abc"}, "WEBSOCKET_PORT='abc'"),
        ({"rate_limit_token": "ten a minute"}, "RATE_LIMIT_TOKEN='ten a minute'"),
        ({"rate_limit_tts": "5/fortnight"}, "write limits like 10/minute"),
        ({"trusted_proxies": "10.0.0.0/8, proxy.local"}, "'proxy.local' does not appear"),
        ({"tls_cert_file": "/etc/hostname"}, "TLS_CERT_FILE and TLS_KEY_FILE go together"),
        (
            {"tls_cert_file": "/nonexistent.pem", "tls_key_file": "/etc/hostname"},
            "/nonexistent.pem is not a readable file",
        ),
        ({"max_sessions_per_ip": 0}, "MAX_SESSIONS_PER_IP=0"),
        ({"header_timeout_s": 0}, "HEADER_TIMEOUT_S=0"),
    ],
)
def test_a_bad_setting_is_named_with_what_is_accepted(values, message):
    with pytest.raises(InvalidInput, match="bad setting") as bad:
        load_settings(None, **values)
    assert message in str(bad.value)


def test_production_settings_parse():
    settings = load_settings(
        None,
        trusted_proxies="10.0.0.0/8, 127.0.0.1",
        rate_limit_token="10/minute;100/hour",
        rate_limit_tts="",
        session_secret="s3cret",
        grpc_server_address="dns:///lipsync.lipstream.svc.cluster.local:50051",
    )
    assert settings.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    assert settings.rate_limit_tts == ""
    assert settings.session_secret is not None
    assert "s3cret" not in repr(settings)  # a secret never shows in logs
    assert settings.lipsync_address == "dns:///lipsync.lipstream.svc.cluster.local:50051"
    assert not settings.tls
