"""Letterboxing: geometry as Darknet does it, grey margins, and the exact inverse on boxes."""

from __future__ import annotations

import numpy as np
import pytest

from feedtag.vision.letterbox import PAD_VALUE, Letterbox, letterbox, unletterbox_boxes


@pytest.mark.parametrize(
    ("shape", "size", "expected"),
    [
        ((576, 768), 416, (416 / 768, 0, 52, (312, 416))),  # vtest: wide, bars above and below
        ((360, 640), 320, (0.5, 0, 70, (180, 320))),
        ((768, 576), 416, (416 / 768, 52, 0, (416, 312))),  # tall: bars left and right
        ((416, 416), 416, (1.0, 0, 0, (416, 416))),  # already the input size: no resize
        ((100, 200), 416, (416 / 200, 0, 104, (208, 416))),  # enlarged
        ((3, 1000), 32, (0.032, 0, 15, (1, 32))),  # never narrower than one pixel
    ],
)
def test_geometry(
    shape: tuple[int, int], size: int, expected: tuple[float, int, int, tuple[int, int]]
) -> None:
    """``expected`` is (scale, pad_x, pad_y, (picture height, picture width))."""
    scale, pad_x, pad_y, inner = expected
    image = np.full((*shape, 3), 200, np.uint8)
    box = letterbox(image, size)
    assert box.tensor.shape == (3, size, size)
    assert box.tensor.dtype == np.float32
    assert box.scale == pytest.approx(scale)
    assert (box.pad_x, box.pad_y) == (pad_x, pad_y)
    # the picture occupies exactly the inner rectangle; everything else is grey 0.5
    inside = np.zeros((size, size), bool)
    inside[pad_y : pad_y + inner[0], pad_x : pad_x + inner[1]] = True
    assert np.allclose(box.tensor[:, inside], 200 / 255)
    assert np.all(box.tensor[:, ~inside] == PAD_VALUE)


def test_channels_stay_in_rgb_order() -> None:
    image = np.zeros((64, 128, 3), np.uint8)
    image[..., 0] = 255  # pure red
    image[..., 2] = 51
    tensor = letterbox(image, 64).tensor
    centre = tensor[:, 32, 32]
    assert centre == pytest.approx([1.0, 0.0, 0.2], abs=1e-6)


def test_resize_keeps_content_in_place() -> None:
    # a white square in the top-left quarter stays in the top-left quarter of the picture area
    image = np.zeros((200, 400, 3), np.uint8)
    image[:100, :200] = 255
    box = letterbox(image, 100)  # scale 0.25, picture 100x50 at pad_y 25
    assert box.tensor[0, 25 + 10, 10] == pytest.approx(1.0)
    assert box.tensor[0, 25 + 40, 90] == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("image", "size", "message"),
    [
        (np.zeros((4, 4), np.uint8), 32, r"shape \(H, W, 3\)"),
        (np.zeros((4, 4, 4), np.uint8), 32, r"shape \(H, W, 3\)"),
        (np.zeros((0, 4, 3), np.uint8), 32, r"shape \(H, W, 3\)"),
        (np.zeros((4, 4, 3), np.float32), 32, "uint8"),
        ([[[0, 0, 0]]], 32, "uint8"),
        (np.zeros((4, 4, 3), np.uint8), 0, "size >= 1"),
    ],
    ids=["2d", "4-channels", "empty", "float", "list", "size-0"],
)
def test_rejects(image: object, size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        letterbox(image, size)  # type: ignore[arg-type]


@pytest.mark.parametrize(("height", "width"), [(576, 768), (360, 640), (768, 576), (97, 131)])
def test_unletterbox_inverts_letterbox(height: int, width: int) -> None:
    box = letterbox(np.zeros((height, width, 3), np.uint8), 416)
    frame_boxes = np.array(
        [[10, 20, 50, 90], [0, 0, width, height], [width / 3, height / 4, width / 2, height / 2]],
        np.float32,
    )
    offset = np.array([box.pad_x, box.pad_y] * 2, np.float32)
    in_input = frame_boxes * np.float32(box.scale) + offset
    back = unletterbox_boxes(in_input, box, width, height)
    assert back.dtype == np.float32
    assert np.allclose(back, frame_boxes, atol=1e-3)


def test_unletterbox_clips_to_the_frame() -> None:
    box = Letterbox(np.zeros((3, 416, 416), np.float32), 416 / 768, 0, 52)
    boxes = np.array([[-20, 0, 430, 416], [100, 40, 200, 60]], np.float32)
    back = unletterbox_boxes(boxes, box, 768, 576)
    assert back[0].tolist() == [0.0, 0.0, 768.0, 576.0]
    assert back[1, 1] == 0.0 and back[1, 3] == pytest.approx(8 * 768 / 416)


def test_unletterbox_empty_and_bad_shape() -> None:
    box = Letterbox(np.zeros((3, 32, 32), np.float32), 1.0, 0, 0)
    assert unletterbox_boxes(np.zeros((0, 4), np.float32), box, 32, 32).shape == (0, 4)
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        unletterbox_boxes(np.zeros((3,), np.float32), box, 32, 32)
