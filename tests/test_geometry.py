"""Crop geometry follows SyncTalk_2D's conventions exactly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lipstream.errors import InvalidInput
from lipstream.geometry import (
    CROP_SIZE,
    INNER_OFFSET,
    MASK,
    NETWORK_SIZE,
    CropBox,
    crop_box,
    crop_frame,
    inner,
    masked,
    parse_landmarks,
    paste_prediction,
    read_landmarks,
)


def _landmarks(left=(100.7, 0.0), right=(220.2, 0.0), nose=(0.0, 90.9), count=68) -> np.ndarray:
    pts = np.full((count, 2), 50.0)
    pts[1], pts[31], pts[52] = left, right, nose
    return pts.astype(np.int32)


def _frame(width=400, height=300) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_constants_match_the_network_layout():
    assert (CROP_SIZE, INNER_OFFSET, NETWORK_SIZE) == (328, 4, 320)
    assert CROP_SIZE == NETWORK_SIZE + 2 * INNER_OFFSET


def test_lms_values_are_parsed_as_floats_and_truncated_like_int32_casts():
    text = "\n".join(["12.9 -3.7", "0.5 1e1"] + ["1 2"] * 60) + "\n"
    lms = parse_landmarks(text)
    assert lms.dtype == np.int32 and lms.shape == (62, 2)
    assert lms[0].tolist() == [12, -3] and lms[1].tolist() == [0, 10]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 2\n3\n", r"line 2 must hold two numbers 'x y', got '3'"),
        ("1 2\nx y\n", r"line 2 must hold two numbers"),
        ("1 2\n" * 10, r"at least 53 landmarks .* found 10"),
        ("1 nan\n" * 60, r"line 1 holds a non-finite value"),
    ],
)
def test_malformed_lms_is_refused_with_the_line(text, message):
    with pytest.raises(InvalidInput, match=message):
        parse_landmarks(text, source="7.lms")


def test_missing_lms_file_is_named(tmp_path):
    with pytest.raises(InvalidInput, match=r"landmarks file not found: .*nope\.lms"):
        read_landmarks(tmp_path / "nope.lms")


def test_box_uses_cheeks_and_nose_and_is_square():
    box = crop_box(_landmarks(), 400, 300)
    assert box.as_list() == [100, 90, 220, 210]
    assert box.width == box.height == 120


def test_box_running_past_the_frame_is_clipped_like_numpy_slicing():
    box = crop_box(_landmarks(nose=(0, 250)), 400, 300)
    assert box.as_list() == [100, 250, 220, 300]
    frame = _frame()
    np.testing.assert_array_equal(
        frame[box.ymin : box.ymax, box.xmin : box.xmax], frame[250:370, 100:220]
    )


@pytest.mark.parametrize(
    ("lms", "message"),
    [
        (_landmarks(left=(200, 0), right=(205, 0)), r"box 5 px wide"),
        (_landmarks(nose=(0, 299)), r"falls outside the 400x300 frame"),
        (_landmarks()[:40], r"landmarks must be an array"),
    ],
)
def test_unusable_landmarks_are_refused(lms, message):
    with pytest.raises(InvalidInput, match=message):
        crop_box(lms, 400, 300)


def test_crop_is_bicubic_resize_of_the_box():
    frame, box = _frame(), CropBox(100, 90, 220, 210)
    crop = crop_frame(frame, box)
    assert crop.shape == (328, 328, 3) and crop.dtype == np.uint8
    expected = cv2.resize(frame[90:210, 100:220], (328, 328), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(crop, expected)


def test_box_outside_frame_is_refused_when_cropping():
    with pytest.raises(InvalidInput, match=r"does not fit a 400x300 frame"):
        crop_frame(_frame(), CropBox(300, 200, 420, 320))


def test_inner_region_is_the_network_view():
    crop = np.arange(328 * 328 * 3, dtype=np.int64).reshape(328, 328, 3)
    np.testing.assert_array_equal(inner(crop), crop[4:324, 4:324])
    batch = np.stack([crop, crop])
    assert inner(batch).shape == (2, 320, 320, 3)


def test_mask_covers_rows_5_to_309_and_columns_5_to_314():
    region = np.full((320, 320, 3), 200, dtype=np.uint8)
    out = masked(region)
    zero = np.all(out == 0, axis=2)
    rows, cols = np.nonzero(zero)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 309, 5, 314)
    assert zero.sum() == 305 * 310
    assert (MASK.x, MASK.y, MASK.width, MASK.height) == (5, 5, 310, 305)
    assert region.min() == 200  # the input is left alone


def test_paste_replaces_only_the_box_and_keeps_the_crop_border():
    frame, box = _frame(), CropBox(100, 90, 220, 210)
    prediction = np.zeros((320, 320, 3), dtype=np.uint8)
    out = paste_prediction(frame, box, prediction)
    outside = np.ones(frame.shape[:2], dtype=bool)
    outside[90:210, 100:220] = False
    np.testing.assert_array_equal(out[outside], frame[outside])
    composed = crop_frame(frame, box)
    composed[4:324, 4:324] = 0
    expected = cv2.resize(composed, (120, 120), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(out[90:210, 100:220], expected)
    assert out[150, 160].max() == 0 and frame[150, 160].max() > 0  # input not modified


def test_bounds_round_trip():
    box = CropBox.from_bounds(np.array([1, 2, 30, 31], dtype=np.int32))
    assert box == CropBox(1, 2, 30, 31) and box.as_list() == [1, 2, 30, 31]
    with pytest.raises(InvalidInput, match=r"0 <= xmin < xmax"):
        CropBox(10, 0, 5, 5)
