"""Starting and stopping the web server: free ports, start-up lines, signals, no model loaded."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap

import httpx
import pytest

from lipstream.cli import build_parser
from lipstream.errors import LipstreamError
from lipstream.web.server import start_web_server


def test_port_zero_binds_a_free_port_and_stop_releases_it(make_settings, loop_thread, capsys):
    server = loop_thread.run(start_web_server(make_settings(), port=0))
    try:
        assert server.port > 0
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    finally:
        loop_thread.run(server.stop())

    printed = capsys.readouterr().out.splitlines()
    assert printed[:4] == [
        f"Real-time Lip Sync Token Server starting on port {server.port}",
        f"Serving static files from: {make_settings().console_dir.resolve()}",
        f"Token endpoint: http://localhost:{server.port}/token",
        f"Browser access: http://localhost:{server.port}/index.html",
    ]
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")


def test_a_busy_port_is_a_clear_error(make_settings, loop_thread):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(LipstreamError, match=rf"127\.0\.0\.1:{port}.*PORT"):
            loop_thread.run(start_web_server(make_settings(), port=port))


def test_web_command_options():
    args = build_parser().parse_args(
        ["web", "--host", "0.0.0.0", "--port", "0", "--models-dir", "m", "--console-dir", "c"]
    )

    assert (args.host, args.port, str(args.models_dir), str(args.console_dir)) == (
        "0.0.0.0",
        0,
        "m",
        "c",
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_lipstream_web_serves_and_stops_cleanly_on_a_signal(
    tmp_path, console_dir, web_models_dir, stop_signal
):
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env = {**os.environ, "LIPSTREAM_ENV_FILE": str(env_file), "OPENAI_API_KEY": ""}
    command = [sys.executable, "-m", "lipstream.cli", "web", "--port", "0"]
    command += ["--models-dir", str(web_models_dir), "--console-dir", str(console_dir)]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        lines = [process.stdout.readline() for _ in range(4)]
        port = int(
            re.fullmatch(r"Real-time Lip Sync Token Server starting on port (\d+)\n", lines[0])[1]
        )
        assert lines[3] == f"Browser access: http://localhost:{port}/index.html\n"
        page = httpx.get(f"http://127.0.0.1:{port}/index.html")
        assert page.status_code == 200
        process.send_signal(stop_signal)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Web server stopped" in out
    assert "Traceback" not in err


def test_the_web_server_loads_no_inference_runtime(web_models_dir, console_dir):
    # Serving the avatars' videos must not pull in onnxruntime or torch (only speech may).
    script = textwrap.dedent(
        f"""
        import sys
        from starlette.testclient import TestClient
        from lipstream.settings import load_settings
        from lipstream.web.app import create_app

        settings = load_settings(None, models_dir={str(web_models_dir)!r},
                                 console_dir={str(console_dir)!r})
        with TestClient(create_app(settings)) as client:
            for path in ("/api/models", "/api/model-video/demo", "/api/config", "/index.html"):
                assert client.get(path).status_code == 200, path
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("onnxruntime", "torch"))
        print("loaded:", loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout, result.stdout
