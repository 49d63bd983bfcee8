"""The services' settings: read once per process from the environment and ``.env``, validated.

The variable names and defaults are those of the server guide (``AUDIO_SAMPLE_RATE``,
``WEBSOCKET_PORT``, ...), plus a few of lipstream's own (``MODELS_DIR``, ``OPENAI_BASE_URL``,
``HOST``, ...). A bad value stops the start with a message naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from lipstream.errors import InvalidInput

_PORT = Field(ge=0, le=65535)  # 0: any free port (tests)


# The runtimes a user may ask for (RUNTIME); "auto" takes the fastest the package and machine
# allow (lipstream.model.engine.resolve_runtime).
RUNTIME_CHOICES = ("auto", "openvino-int8", "openvino-bf16", "onnx-int8", "onnx-fp32", "torch")


class Settings(BaseSettings):
    """One frozen settings object per process; see docs/configuration.md for every variable."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # OpenAI Realtime (web server)
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com"
    openai_realtime_model: str = "gpt-realtime"
    openai_realtime_voice: str = "alloy"
    openai_token_ttl_s: int = Field(600, ge=10, le=7200)

    # Audio (frame generator)
    audio_sample_rate: int = Field(24000, ge=8000, le=96000)
    audio_chunk_duration_ms: int = Field(40, ge=10, le=1000)
    audio_buffer_size: int = Field(3000, ge=500, le=60000)  # ms of audio a session may queue
    frames_for_inference: int = Field(16, ge=1, le=64)
    inference_batch_size: int = Field(5, ge=1, le=64)
    lookahead_frames: int = Field(7, ge=0, le=64)

    # Ports and addresses
    host: str = "127.0.0.1"
    port: Annotated[int, _PORT] = 3000
    grpc_server_port: Annotated[int, _PORT] = 50051
    websocket_port: Annotated[int, _PORT] = 8080
    grpc_server_address: str = ""  # where the frame generator finds the lip-sync service
    public_websocket_url: str = ""  # what the console connects to; default ws://<page host>:8080

    # Models
    models_dir: Path = Path("models")
    runtime: str = "auto"  # one of RUNTIME_CHOICES
    device: str = "auto"  # auto, cpu, cuda
    batch_window_ms: float = Field(2.0, ge=0.0, le=100.0)
    max_batch_frames: int = Field(32, ge=1, le=512)
    max_queued_frames: int = Field(400, ge=1, le=100000)
    grpc_deadline_ms: int = Field(5000, ge=50, le=600000)
    grpc_streaming: bool = True  # frame generator: StreamLipSync (audio sent once), else unary

    # Web server
    cors_allow_origins: Annotated[tuple[str, ...], NoDecode] = ()
    console_dir: Path | None = None
    max_sessions: int = Field(64, ge=1, le=10000)
    # ICE servers of WebRTC calls: JSON [{"urls", "username", "credential"}] or comma-separated
    # stun:/turn: URLs; none by default (no public STUN server is waited on)
    webrtc_ice_servers: str = ""
    recordings_dir: Path | None = None  # set: WebRTC calls may ask to be recorded there

    # Production: metrics, session tokens, rate limits, TLS
    grpc_metrics_port: Annotated[int, _PORT] = 9091  # the lip-sync service's GET /metrics
    session_secret: SecretStr | None = None  # set: the frame generator takes signed tokens only
    session_token_ttl_s: int = Field(300, ge=10, le=86400)
    max_sessions_per_ip: int = Field(16, ge=1, le=10000)
    rate_limit_token: str = "10/minute"  # POST /token, per client address; "" = no limit
    rate_limit_session: str = "30/minute"  # POST /api/session
    rate_limit_tts: str = "60/minute"  # POST /api/tts
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()  # whose X-Forwarded-For counts
    tls_cert_file: Path | None = None  # with tls_key_file: HTTPS, WSS and gRPC over TLS
    tls_key_file: Path | None = None
    grpc_tls_ca_file: Path | None = None  # the frame generator trusts it for the lip-sync service
    grpc_tls_server_name: str = (
        ""  # the name the service's certificate must carry (default: the target's host)
    )
    client_send_timeout_s: float = Field(10.0, ge=0.5, le=600.0)  # a client not reading: closed
    header_timeout_s: float = Field(10.0, ge=0.5, le=600.0)  # slow request headers: cut off

    # Logs and debug
    log_level: str = "INFO"
    log_dir: Path | None = None
    debug_audio_processing: bool = False
    debug_frame_generation: bool = False
    debug_websocket_messages: bool = False

    @field_validator("cors_allow_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value

    @field_validator("rate_limit_token", "rate_limit_session", "rate_limit_tts")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        if value.strip():
            from limits import parse_many

            try:
                parse_many(value)
            except ValueError:
                raise ValueError(
                    "write limits like 10/minute or 100/hour;5/second (empty: no limit)"
                ) from None
        return value.strip()

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither")
        for path in (self.tls_cert_file, self.tls_key_file, self.grpc_tls_ca_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a readable file")
        return self

    @property
    def tls(self) -> bool:
        """Whether the services serve TLS (HTTPS, WSS, gRPC over TLS)."""
        return self.tls_cert_file is not None

    @field_validator("runtime")
    @classmethod
    def _check_runtime(cls, value: str) -> str:
        if value not in RUNTIME_CHOICES:
            raise ValueError(f"choose one of {', '.join(RUNTIME_CHOICES)}")
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "cuda"):
            raise ValueError("choose one of auto, cpu, cuda")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("choose one of DEBUG, INFO, WARNING, ERROR")
        return value

    @field_validator("openai_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def lipsync_address(self) -> str:
        """host:port of the lip-sync service, as the frame generator dials it."""
        return self.grpc_server_address or f"{self.host}:{self.grpc_server_port}"


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Settings from the environment, the env file and overrides; bad ones raise InvalidInput."""
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if not err["loc"]:  # a rule across settings: its message names them
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            name = str(err["loc"][0]).upper()
            problems.append(f"{name}={err.get('input')!r}: {err['msg']}")
        raise InvalidInput("bad setting: " + "; ".join(problems)) from None


def command_settings(**options: Any) -> Settings:
    """A command's settings: the environment and .env, overridden by the options it was given.

    ``options`` maps setting names to command-line values; None means the option was not given.
    """
    given = {name: value for name, value in options.items() if value is not None}
    return load_settings(environment_file(), **given)


def environment_file() -> str | None:
    """The .env file the services read: LIPSTREAM_ENV_FILE, else ./.env when it exists."""
    chosen = os.environ.get("LIPSTREAM_ENV_FILE")
    if chosen:
        return chosen
    return ".env" if Path(".env").is_file() else None


_WILDCARD_HOSTS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def dial_host(host: str) -> str:
    """What a client on this machine dials for a service listening on ``host``: the loopback
    for a wildcard address, an IPv6 address in brackets (ready for ``host:port``)."""
    host = host.strip("[]")
    host = _WILDCARD_HOSTS.get(host, host)
    return f"[{host}]" if ":" in host else host
