"""Letterboxing: fit an RGB frame into a square model input without distorting it, and map
boxes found in that input back to the frame.

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

from dataclasses import dataclass
from typing import Final

import av
import numpy as np
import numpy.typing as npt

#: the grey Darknet fills the letterbox margins with, on the 0..1 scale
PAD_VALUE: Final = 0.5


@dataclass(frozen=True, slots=True)
class Letterbox:
    """A frame fitted into a ``size`` x ``size`` model input.

    ``tensor`` is ``float32 (3, size, size)``, RGB, 0..1, the margins grey 0.5. A frame pixel
    ``(x, y)`` lands at ``(x * scale + pad_x, y * scale + pad_y)`` in the input.
    """

    tensor: npt.NDArray[np.float32]
    scale: float
    pad_x: int
    pad_y: int


def letterbox(image: npt.NDArray[np.uint8], size: int) -> Letterbox:
    """Scale ``image`` (``uint8 (H, W, 3)`` RGB) to fit ``size`` x ``size``, centred on grey.

    The scaled width and height are rounded to whole pixels and the margins split as Darknet
    splits them, the smaller half first.

    >>> import numpy as np
    >>> box = letterbox(np.full((2, 4, 3), 255, np.uint8), 8)
    >>> box.tensor[0, :, 0].tolist()
    [0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"expected image as uint8 numpy.ndarray, got {got}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected image shape (H, W, 3), got {image.shape}")
    if size < 1:
        raise ValueError(f"expected size >= 1, got {size}")
    height, width = int(image.shape[0]), int(image.shape[1])
    scale = min(size / width, size / height)
    new_width = min(size, max(1, round(width * scale)))
    new_height = min(size, max(1, round(height * scale)))
    resized = _resize(image, new_width, new_height)
    pad_x = (size - new_width) // 2
    pad_y = (size - new_height) // 2
    tensor = np.full((3, size, size), PAD_VALUE, np.float32)
    # One multiply into the slice: no float copy of the whole HWC image is kept around.
    np.multiply(
        resized.transpose(2, 0, 1),
        np.float32(1 / 255),
        out=tensor[:, pad_y : pad_y + new_height, pad_x : pad_x + new_width],
        casting="unsafe",
    )
    return Letterbox(tensor, scale, pad_x, pad_y)


def unletterbox_boxes(
    xyxy: npt.NDArray[np.float32], box: Letterbox, width: int, height: int
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


def _resize(image: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    if (image.shape[1], image.shape[0]) == (width, height):
        return image
    shrinking = width < image.shape[1]
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    out = frame.reformat(
        width=width, height=height, interpolation="AREA" if shrinking else "BILINEAR"
    )
    # rgb24 always comes back as uint8; the stub's return type is a union of dtypes
    return np.asarray(out.to_ndarray(), dtype=np.uint8)
