"""The server-side compositor: the mouth pasted into its avatar frame as the console does."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from lipstream.compositor import Compositor, FrameCache, decode_avatar_video, feather_mask
from lipstream.errors import InvalidInput
from lipstream.model.package import load_package


@pytest.fixture(scope="module")
def package(demo_package):
    return load_package(demo_package)


@pytest.fixture(scope="module")
def cache():
    return FrameCache()


def mouth(value: int) -> np.ndarray:
    return np.full((320, 320, 3), value, dtype=np.uint8)


def test_the_feather_is_opaque_inside_and_fades_to_nothing_at_every_edge():
    mask = feather_mask(92, 80)[:, :, 0]
    assert mask.shape == (80, 92)
    assert mask[40, 46] == 1.0  # the middle is the mouth alone
    assert mask[0].max() < 0.05 and mask[:, 0].max() < 0.05  # the border is the frame
    assert mask[-1].max() < 0.05 and mask[:, -1].max() < 0.05
    row = mask[40, :46]
    assert np.all(np.diff(row) >= 0)  # rising smoothly toward the middle
    np.testing.assert_allclose(mask, mask[::-1, ::-1], atol=1e-6)


def test_idle_frames_are_the_avatars_own_video_decoded_once(package, cache):
    first = Compositor(package, cache=cache)
    second = Compositor(package, cache=cache)

    assert (first.width, first.height) == (package.video_width, package.video_height)
    assert first.idle(7) is not None and first.idle(7).shape == (512, 512, 3)
    assert np.shares_memory(first.compose(7, None), first.idle(7))  # no mouth: the frame itself
    assert np.shares_memory(second.idle(7), first.idle(7))  # shared, not decoded again
    assert len(cache) == 1
    with pytest.raises(ValueError):
        first.idle(7)[0, 0] = 0  # read-only: no session can damage another's frames


def test_the_mouth_goes_into_its_box_with_a_feathered_border(package, cache):
    compositor = Compositor(package, cache=cache)
    frame = compositor.idle(3)
    x0, y0, x1, y1 = (int(v) for v in package.bounds[3])

    out = compositor.compose(3, mouth(255))

    outside = np.ones(frame.shape[:2], dtype=bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], frame[outside])  # nothing changes outside the box
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    assert out[cy, cx].tolist() == [255, 255, 255]  # the middle is the mouth
    assert np.abs(out[y0, cx].astype(int) - frame[y0, cx]).max() <= 12  # the edge is the frame
    hard = Compositor(package, cache=cache, blend=False).compose(3, mouth(255))
    assert hard[y0, cx].tolist() == [255, 255, 255]  # fast mode: hard edges


def test_a_jpeg_mouth_and_explicit_bounds(package, cache):
    compositor = Compositor(package, cache=cache)
    ok, jpeg = cv2.imencode(".jpg", mouth(0))
    assert ok

    out = compositor.compose(0, jpeg.tobytes(), bounds=(100, 100, 200, 200))

    assert out[150, 150].max() <= 3  # the black mouth, where it was asked for
    assert np.array_equal(out[:90], compositor.idle(0)[:90])


def test_an_rgb_compositor_makes_the_same_frames_in_rgb(package, cache):
    bgr = Compositor(package, cache=cache)
    rgb = Compositor(package, cache=cache, order="RGB")
    colour = np.zeros((320, 320, 3), np.uint8)
    colour[..., 2] = 200  # red, in OpenCV's order
    ok, jpeg = cv2.imencode(".jpg", colour)
    assert ok
    x0, y0, x1, y1 = (int(v) for v in package.bounds[5])

    assert rgb.order == "RGB" and len(cache) == 2  # each order decoded once, then shared
    assert np.array_equal(rgb.idle(5), bgr.idle(5)[..., ::-1])
    speaking = rgb.compose(5, jpeg.tobytes())
    assert speaking[(y0 + y1) // 2, (x0 + x1) // 2, 0] > 190  # red comes first in RGB
    assert np.array_equal(speaking, bgr.compose(5, jpeg.tobytes())[..., ::-1])
    with pytest.raises(InvalidInput, match="order must be one of BGR, RGB"):
        Compositor(package, cache=FrameCache(), order="YUV")


def test_a_scaled_compositor_scales_frames_and_boxes(package):
    small = Compositor(package, scale=0.5, cache=FrameCache())
    assert (small.width, small.height) == (256, 256)
    x0, y0, x1, y1 = (round(v * 0.5) for v in package.bounds[0])
    out = small.compose(0, mouth(255))
    assert out[(y0 + y1) // 2, (x0 + x1) // 2].tolist() == [255, 255, 255]


def test_compose_async_runs_off_the_event_loop(package, cache):
    compositor = Compositor(package, cache=cache)

    async def both():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        frames = [await compositor.compose_async(k, mouth(128)) for k in range(20)]
        ticker.cancel()
        return frames, ticks

    frames, ticks = asyncio.run(both())
    assert len(frames) == 20 and ticks > 20  # the loop kept running while frames were made


def test_bad_input_is_refused_saying_what_is_accepted(package, cache):
    compositor = Compositor(package, cache=cache)
    with pytest.raises(InvalidInput, match="frame_id 250 is outside 0..249"):
        compositor.compose(250, mouth(0))
    with pytest.raises(InvalidInput, match=r"uint8 \[320, 320, 3\]"):
        compositor.compose(0, np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InvalidInput, match="not a JPEG"):
        compositor.compose(0, b"not a picture")
    with pytest.raises(InvalidInput, match="scale must be in"):
        decode_avatar_video(package, scale=0)


def test_the_cache_drops_the_least_recently_used_video_beyond_its_bound(package):
    cache = FrameCache(max_bytes=1)
    full = cache.get(package, 1.0)
    half = cache.get(package, 0.5)
    assert len(cache) == 1 and cache.get(package, 0.5) is half  # one kept, however small
    assert full.frames.shape[1:] == (512, 512, 3)  # still usable by whoever holds it
