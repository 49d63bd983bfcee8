"""The avatars: GET /api/models lists the packages, GET /api/model-video/NAME streams a video."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="module")
def demo_video(web_models_dir) -> bytes:
    return (web_models_dir / "demo" / "video.mp4").read_bytes()


def test_models_lists_the_demo_avatar_with_what_the_console_needs(web):
    answer = httpx.get(f"{web}/api/models")

    assert answer.status_code == 200
    models = {entry["name"]: entry for entry in answer.json()}
    demo = models["demo"]
    assert demo["fps"] == 25
    assert demo["frame_count"] == 250
    assert demo["version"]
    assert demo["lookahead_ms"] > 400
    assert demo["lookahead_frames"] == 11
    assert demo["video_url"] == "/api/model-video/demo"
    assert demo["video_width"] > 0 and demo["video_height"] > 0
    assert "error" not in demo


def test_a_broken_package_is_listed_with_its_problem(web):
    models = {entry["name"]: entry for entry in httpx.get(f"{web}/api/models").json()}

    broken = models["broken"]
    assert "missing" in broken["error"]
    assert "video_url" not in broken


def test_the_video_streams_whole_with_range_support(web, demo_video):
    answer = httpx.get(f"{web}/api/model-video/demo")

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "video/mp4"
    assert answer.headers["accept-ranges"] == "bytes"
    assert int(answer.headers["content-length"]) == len(demo_video)
    assert answer.headers["etag"] and answer.headers["last-modified"]
    assert answer.content == demo_video


def test_a_range_request_gets_206_and_just_those_bytes(web, demo_video):
    answer = httpx.get(f"{web}/api/model-video/demo", headers={"Range": "bytes=0-99"})

    assert answer.status_code == 206
    assert answer.content == demo_video[:100]
    assert answer.headers["content-range"] == f"bytes 0-99/{len(demo_video)}"


def test_a_range_from_the_middle_to_the_end(web, demo_video):
    start = len(demo_video) - 1000
    answer = httpx.get(f"{web}/api/model-video/demo", headers={"Range": f"bytes={start}-"})

    assert answer.status_code == 206
    assert answer.content == demo_video[start:]


def test_a_range_past_the_end_is_416(web, demo_video):
    size = len(demo_video)
    answer = httpx.get(f"{web}/api/model-video/demo", headers={"Range": f"bytes={size}-"})

    assert answer.status_code == 416
    assert answer.headers["content-range"] == f"bytes */{size}"


def test_a_cached_video_is_revalidated_with_304(web):
    first = httpx.get(f"{web}/api/model-video/demo")
    again = httpx.get(
        f"{web}/api/model-video/demo", headers={"If-None-Match": first.headers["etag"]}
    )

    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]


def test_head_tells_the_size_without_the_body(web, demo_video):
    answer = httpx.head(f"{web}/api/model-video/demo")

    assert answer.status_code == 200
    assert int(answer.headers["content-length"]) == len(demo_video)
    assert answer.content == b""


def test_an_unknown_model_is_404_naming_the_known_ones(web):
    answer = httpx.get(f"{web}/api/model-video/nobody")

    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "unknown_model"
    assert error["known_models"] == ["demo"]
    assert "demo" in error["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/model-video/..%2Fdemo%2Fmanifest.json",
        "/api/model-video/..%2F..%2Fsecret.txt",
        "/api/model-video/../demo/manifest.json",
        "/api/model-video/%2e%2e",
        "/api/model-video/demo%2Fmanifest.json",
        "/api/model-video/.hidden",
        "/api/model-video/%2Fetc%2Fpasswd",
        "/../secret.txt",
        "/..%2Fsecret.txt",
        "/%2e%2e/secret.txt",
    ],
)
def test_paths_that_try_to_leave_their_folder_get_nothing(web, raw_get, path):
    status, body = raw_get(web, path)

    assert status in (400, 404)
    assert b"lipstream-model-package" not in body
    assert b"not for the browser" not in body
    assert b"root:" not in body
