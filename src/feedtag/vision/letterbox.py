"""Letterboxing: fit an RGB frame into a model input (square, or the stride-aligned rectangle
:func:`input_shape` chooses) without distorting it, and map boxes found in that input back
to the frame.

Darknet trains and runs YOLO on letterboxed images: the frame is scaled by one factor so that
it fits, centred, and the rest is filled with grey 0.5. A detector fed a stretched image
instead finds people too thin or too fat, so every backend letterboxes exactly this way, and
calibration of the INT8 model (:mod:`feedtag.vision.modelbuild.quantize`) uses the same
function, so that the quantizer sees the same numbers that inference will.

Resizing is done by swscale through PyAV (OpenCV is not a dependency): area averaging when
shrinking, which does not alias fine texture the way point-sampling bilinear does, and
bilinear when enlarging.

>>> import numpy as np
>>> frame = np.zeros((576, 768, 3), np.uint8)
>>> box = letterbox(frame, 416)
>>> box.tensor.shape, box.scale, box.pad_x, box.pad_y
((3, 416, 416), 0.5416666666666666, 0, 52)
>>> unletterbox_boxes(np.array([[0, 52, 416, 364]], np.float32), box, 768, 576).tolist()
[[0.0, 0.0, 768.0, 576.0]]
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final

import av
import numpy as np
import numpy.typing as npt
from av.video.reformatter import VideoReformatter

#: the grey Darknet fills the letterbox margins with, on the 0..1 scale
PAD_VALUE: Final = 0.5


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a frame sits in a model input: a frame pixel ``(x, y)`` lands at
    ``(x * scale + pad_x, y * scale + pad_y)``."""

    scale: float
    pad_x: int
    pad_y: int


@dataclass(frozen=True, slots=True)
class Letterbox:
    """A frame fitted into a model input of ``height`` x ``width``.

    ``tensor`` is ``float32 (3, height, width)``, RGB, 0..1, the margins grey 0.5. A frame
    pixel ``(x, y)`` lands at ``(x * scale + pad_x, y * scale + pad_y)`` in the input.
    """

    tensor: npt.NDArray[np.float32]
    scale: float
    pad_x: int
    pad_y: int


def input_shape(width: int, height: int, long_side: int, stride: int = 32) -> tuple[int, int]:
    """The smallest ``(width, height)`` model input, both multiples of ``stride``, that holds
    a ``width`` x ``height`` frame scaled so that its long side is ``long_side``.

    A 16:9 frame in a square 416 input is 44% grey padding that the network convolves for
    nothing; its own rectangle, 416 x 256, costs about 60% of the square (docs/performance.md).

    >>> input_shape(640, 360, 416), input_shape(360, 640, 416), input_shape(768, 576, 416)
    ((416, 256), (256, 416), (416, 320))
    """
    if width < 1 or height < 1:
        raise ValueError(f"expected a frame of at least 1 x 1, got {width} x {height}")
    if long_side < stride or long_side % stride:
        raise ValueError(f"expected long_side a multiple of {stride}, got {long_side}")
    scale = long_side / max(width, height)

    def side(length: int) -> int:
        scaled = min(long_side, max(1, round(length * scale)))
        return -(-scaled // stride) * stride

    return side(width), side(height)


def scaled_shape(
    width: int, height: int, scale: float, long_side: int, stride: int = 32
) -> tuple[int, int]:
    """The smallest ``(width, height)`` model input, both multiples of ``stride`` and at most
    ``long_side``, that holds a ``width`` x ``height`` image scaled by ``scale``: part of a
    frame (an active region) analysed at the scale its whole frame would get.

    >>> scaled_shape(320, 200, 0.65, 416), scaled_shape(640, 360, 0.65, 416)
    ((224, 160), (416, 256))
    """
    if width < 1 or height < 1:
        raise ValueError(f"expected an image of at least 1 x 1, got {width} x {height}")
    if not 0 < scale <= 64:
        raise ValueError(f"expected 0 < scale <= 64, got {scale}")

    def side(length: int) -> int:
        scaled = min(long_side, max(1, round(length * scale)))
        return -(-scaled // stride) * stride

    return side(width), side(height)


def picture_size(width: int, height: int, input_width: int, input_height: int) -> tuple[int, int]:
    """The ``(width, height)`` a ``width`` x ``height`` frame is scaled to inside a model
    input of ``input_width`` x ``input_height``: one factor for both sides, rounded to whole
    pixels. A frame that already has this size is placed without resizing, which is what
    ingest's frames at the model's scale rely on.

    >>> picture_size(640, 360, 416, 256), picture_size(1280, 720, 416, 416)
    ((416, 234), (416, 234))
    """
    scale = min(input_width / width, input_height / height)
    return (
        min(input_width, max(1, round(width * scale))),
        min(input_height, max(1, round(height * scale))),
    )


def letterbox(image: npt.NDArray[np.uint8], size: int | tuple[int, int]) -> Letterbox:
    """Scale ``image`` (``uint8 (H, W, 3)`` RGB) to fit ``size`` x ``size`` (or ``size =
    (width, height)``), centred on grey.

    The scaled width and height are rounded to whole pixels and the margins split as Darknet
    splits them, the smaller half first.

    >>> import numpy as np
    >>> box = letterbox(np.full((2, 4, 3), 255, np.uint8), 8)
    >>> box.tensor[0, :, 0].tolist()
    [0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    """
    width, height = (size, size) if isinstance(size, int) else size
    if width < 1 or height < 1:
        raise ValueError(f"expected size >= 1, got {size}")
    tensor = np.empty((3, height, width), np.float32)
    placed = letterbox_into(image, tensor)
    return Letterbox(tensor, placed.scale, placed.pad_x, placed.pad_y)


def letterbox_into(
    image: npt.NDArray[np.uint8],
    out: npt.NDArray[np.floating],
    *,
    bgr: bool = False,
    pixel_scale: float = 1.0,
) -> Placement:
    """Letterbox ``image`` into ``out`` (``(3, height, width)``, float, typically one slot
    of a preallocated batch): the picture is converted in one multiply straight into its
    rectangle and only the margins are filled, so nothing of the frame is copied twice.

    ``bgr`` writes the channels in reverse order; ``pixel_scale`` is the value of white
    (YOLOX's convention is BGR, 255). An image that already has the picture's size (ingest
    can deliver frames at the model's scale) is not resized at all.

    >>> import numpy as np
    >>> out = np.zeros((3, 4, 8), np.float32)
    >>> letterbox_into(np.full((2, 8, 3), 255, np.uint8), out)
    Placement(scale=1.0, pad_x=0, pad_y=1)
    >>> out[0, :, 0].tolist()
    [0.5, 1.0, 1.0, 0.5]
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"expected image as uint8 numpy.ndarray, got {got}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected image shape (H, W, 3), got {image.shape}")
    _, size_y, size_x = out.shape
    height, width = int(image.shape[0]), int(image.shape[1])
    scale = min(size_x / width, size_y / height)
    new_width, new_height = picture_size(width, height, size_x, size_y)
    resized = _resize(image, new_width, new_height)
    pad_x = (size_x - new_width) // 2
    pad_y = (size_y - new_height) // 2
    grey = PAD_VALUE * pixel_scale
    out[:, :pad_y] = grey
    out[:, pad_y + new_height :] = grey
    out[:, pad_y : pad_y + new_height, :pad_x] = grey
    out[:, pad_y : pad_y + new_height, pad_x + new_width :] = grey
    channels = resized.transpose(2, 0, 1)
    np.multiply(
        channels[::-1] if bgr else channels,
        np.float32(pixel_scale / 255),
        out=out[:, pad_y : pad_y + new_height, pad_x : pad_x + new_width],
        casting="unsafe",
    )
    return Placement(scale, pad_x, pad_y)


def unletterbox_boxes(
    xyxy: npt.NDArray[np.float32], box: Letterbox | Placement, width: int, height: int
) -> npt.NDArray[np.float32]:
    """Map ``(N, 4)`` boxes (x1, y1, x2, y2 in model-input pixels) back to the frame that
    ``box`` was made from, ``width`` x ``height``, clipped to it.

    >>> import numpy as np
    >>> box = Letterbox(np.zeros((3, 8, 8), np.float32), 2.0, 0, 2)
    >>> unletterbox_boxes(np.array([[-4, 2, 6, 20]], np.float32), box, 4, 2).tolist()
    [[0.0, 0.0, 3.0, 2.0]]
    """
    boxes = np.asarray(xyxy, np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"expected boxes shape (N, 4), got {boxes.shape}")
    offset = np.array([box.pad_x, box.pad_y, box.pad_x, box.pad_y], np.float32)
    mapped = (boxes - offset) / np.float32(box.scale)
    limit = np.array([width, height, width, height], np.float32)
    clipped: npt.NDArray[np.float32] = np.clip(mapped, 0, limit).astype(np.float32, copy=False)
    return clipped


#: one swscale reformatter per thread: it keeps its scaling context while the sizes stay the
#: same, where ``VideoFrame.reformat`` on a new frame sets one up every time (about 1.5 ms of
#: the 2.6 ms a 640 x 360 frame took to shrink to 416 x 234)
_reformatters = threading.local()


def _resize(image: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    if (image.shape[1], image.shape[0]) == (width, height):
        return image
    shrinking = width < image.shape[1]
    reformatter = getattr(_reformatters, "current", None)
    if reformatter is None:
        reformatter = _reformatters.current = VideoReformatter()
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    out = reformatter.reformat(
        frame, width=width, height=height, interpolation="AREA" if shrinking else "BILINEAR"
    )
    # rgb24 always comes back as uint8; the stub's return type is a union of dtypes
    return np.asarray(out.to_ndarray(), dtype=np.uint8)
