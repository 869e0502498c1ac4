"""Re-encoded footage keeps its aspect ratio: cut to the target's, never stretched."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from feedtag.bench.footage import CropWindow, crop_window, encode_h264, fit_frame, vtest_path


@pytest.mark.parametrize(
    ("source", "target", "window"),
    [
        ((768, 576), (640, 360), CropWindow(0, 72, 768, 432)),  # vtest.avi, 4:3: rows cut
        ((768, 576), (1280, 720), CropWindow(0, 72, 768, 432)),
        ((640, 272), (640, 360), CropWindow(78, 0, 484, 272)),  # bikes.mp4, 2.35:1: sides cut
        ((1280, 720), (640, 360), CropWindow(0, 0, 1280, 720)),  # already 16:9: untouched
        ((854, 480), (640, 360), CropWindow(0, 0, 854, 480)),  # 16:9 within 1%: untouched
        ((640, 360), (640, 480), CropWindow(80, 0, 480, 360)),  # 16:9 to 4:3
        ((1080, 1920), (640, 360), CropWindow(0, 656, 1080, 608)),  # portrait to 16:9
    ],
)
def test_crop_window_keeps_the_middle_at_the_target_aspect(
    source: tuple[int, int], target: tuple[int, int], window: CropWindow
) -> None:
    assert crop_window(*source, *target) == window
    assert window.width % 2 == 0 and window.height % 2 == 0
    assert abs(window.width / window.height - target[0] / target[1]) < 0.01 * target[0] / target[1]


def marked_frame(width: int, height: int, top: int) -> av.VideoFrame:
    """A grey frame with red rows above ``top``, blue rows below ``height - top`` and a
    white square in the middle."""
    image = np.full((height, width, 3), 128, np.uint8)
    image[:top] = (255, 0, 0)
    image[height - top :] = (0, 0, 255)
    side = height // 4
    y0, x0 = (height - side) // 2, (width - side) // 2
    image[y0 : y0 + side, x0 : x0 + side] = 255
    return av.VideoFrame.from_ndarray(image, format="rgb24")


def test_fit_frame_cuts_the_bands_and_keeps_a_square_square() -> None:
    fitted = fit_frame(marked_frame(768, 576, 72), 640, 360, pixel_format="rgb24")
    image = fitted.to_ndarray()
    assert image.shape == (360, 640, 3)
    red = (image[..., 0] > 200) & (image[..., 2] < 60)
    blue = (image[..., 2] > 200) & (image[..., 0] < 60)
    assert not red[2:-2].any() and not blue[2:-2].any()  # the cut rows are gone
    white = np.argwhere(image.min(axis=2) > 200)
    height = white[:, 0].max() - white[:, 0].min() + 1
    width = white[:, 1].max() - white[:, 1].min() + 1
    # 144 px at 768 -> 640: 120 px both ways (stretched, it would be 120 x 90)
    assert abs(width - 120) <= 2 and abs(height - 120) <= 2


def test_an_encoding_shows_the_middle_of_vtest(tmp_path: Path) -> None:
    clip = encode_h264(vtest_path(), tmp_path / "v.mp4", width=640, height=360, max_seconds=0.2)
    with av.open(str(clip)) as container:
        encoded = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(float)
    with av.open(str(vtest_path())) as container:
        source = next(container.decode(video=0))
    expected = source.reformat(width=640, height=480, format="rgb24").to_ndarray()[60:420]
    stretched = source.reformat(width=640, height=360, format="rgb24").to_ndarray()
    assert encoded.shape == (360, 640, 3)
    error = float(np.abs(encoded - expected).mean())
    assert error < 6 < float(np.abs(encoded - stretched).mean()), error
