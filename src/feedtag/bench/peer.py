"""Two plain loops to put feedtag beside, on the same footage and the same model files.

- :class:`PeerRun`, an NVR-style pipeline written the obvious way with PyAV and ONNX Runtime:
  decode every frame of every feed, and once a second of video resize one frame to 320x320
  and run the default model on it (batch 1, no gate), then keep the confident boxes after
  non-maximum suppression. This is what a simple recorder-with-detection does.
- :class:`LimitRun`, the floor of feedtag's own path: decode keyframes only and run the bare
  ONNX Runtime session at feedtag's input shape on each, nothing else (no letterbox, no
  box decoding, no gate, tracker, rules or store).

Both pace each feed to live time like a camera, one thread per feed sharing one session
(one intra-op thread, as feedtag runs it). A result's latency runs from the time its frame
was due live (feed start + its timestamp) to the end of its inference, so a loop that falls
behind live time shows it.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import av
import av.video.frame
import cv2
import numpy as np
import onnxruntime  # type: ignore[import-untyped,unused-ignore]

from feedtag.bench.capacity import ResultRecorder, start_staggered
from feedtag.ingest.decode import KeyframeIntervalMeter
from feedtag.ingest.policies import ReadHold
from feedtag.runtime.cores import available_cores
from feedtag.vision.letterbox import input_shape
from feedtag.vision.openvino_backend import OpenVinoRuntime
from feedtag.vision.registry import ModelInfo

#: onnxruntime's exports are not declared for type checkers
ort: Any = onnxruntime

#: the peer's detector input (NVRs commonly run their detector at 320)
PEER_INPUT_SIZE: Final = 320
#: the peer's score threshold and NMS overlap
PEER_SCORE: Final = 0.4
PEER_IOU: Final = 0.45


def open_session(model: Path) -> Any:
    """One CPU session with one intra-op thread and no spinning."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


class _PacedFeeds(abc.ABC):
    """One thread per feed playing its file in a loop at live pace."""

    keyframes_only = False

    def __init__(self, sources: list[Path]) -> None:
        self.sources = sources
        self.recorder: ResultRecorder | None = ResultRecorder(marks_due=True)
        self.expected_fps = float(len(sources))
        self._stop = threading.Event()
        self._decoded = [0] * len(sources)
        self._due = [0] * len(sources)
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(len(sources))
        ]

    def start(self) -> None:
        start_staggered([thread.start for thread in self._threads])

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    def counts(self) -> tuple[int, int, int]:
        # nothing is dropped: a loop that cannot keep up falls behind live time instead
        return sum(self._decoded), sum(self._due), 0

    def _run(self, index: int) -> None:
        next_second = 0
        for frame, feed_time, start in self._frames(index):
            self._decoded[index] += 1
            if feed_time < next_second:
                continue
            next_second = int(feed_time) + 1
            self._due[index] += 1
            assert self.recorder is not None  # noqa: S101 - set in __init__
            self.recorder.due(start + feed_time)
            self.analyse(frame)
            self.recorder.record(start + feed_time)

    @abc.abstractmethod
    def analyse(self, frame: av.video.frame.VideoFrame) -> None:
        """What the loop does with the one frame a second it analyses."""

    def _frames(self, index: int) -> Iterator[tuple[av.video.frame.VideoFrame, float, float]]:
        """Decoded frames with their time since the feed started (counting on across loops
        of the file) and the feed's start wall time."""
        start = time.time()
        offset = 0.0
        while not self._stop.is_set():
            with av.open(str(self.sources[index])) as container:
                stream = container.streams.video[0]
                stream.thread_count = 1
                if self.keyframes_only:
                    stream.codec_context.skip_frame = "NONKEY"
                last = 0.0
                # between keyframes, leave the file unread as feedtag's ingest does
                hold, keyframes = ReadHold(), KeyframeIntervalMeter()
                for packet in container.demux(stream):
                    if self._stop.is_set():
                        return
                    if packet.dts is None or packet.time_base is None:
                        continue
                    last = float(packet.dts * packet.time_base)
                    delay = start + offset + last - time.time()
                    if delay > 0 and self._stop.wait(delay):
                        return
                    if self.keyframes_only:
                        hold.observe(offset + last, packet.size, packet.is_keyframe)
                        if not packet.is_keyframe:
                            if delay > 0 and self._hold(hold, keyframes, offset + last):
                                return
                            continue
                        keyframes.observe_keyframe(offset + last)
                    for frame in packet.decode():
                        if isinstance(frame, av.video.frame.VideoFrame):
                            yield frame, offset + float(frame.time or 0.0), start

                offset += last + 1 / 25

    def _hold(self, hold: ReadHold, keyframes: KeyframeIntervalMeter, now_s: float) -> bool:
        """Sleep as :class:`ReadHold` says; True if asked to stop meanwhile."""
        interval, last = keyframes.interval_s, keyframes.last_s
        if interval is None or last is None:
            return False
        held = hold.hold_s(now_s, last + interval)
        return bool(held) and self._stop.wait(held)


class PeerRun(_PacedFeeds):
    """Decode every frame; detect one frame a second at 320, batch 1, no gate."""

    def __init__(self, sources: list[Path], model: Path) -> None:
        super().__init__(sources)
        self.session = open_session(model)
        self.input_name = self.session.get_inputs()[0].name

    def analyse(self, frame: av.video.frame.VideoFrame) -> None:
        size = PEER_INPUT_SIZE
        image = frame.to_ndarray(width=size, height=size, format="rgb24")
        tensor = image.transpose(2, 0, 1)[np.newaxis].astype(np.float32) / 255.0
        (rows,) = self.session.run(None, {self.input_name: tensor})[:1]
        rows = rows[0]
        scores = rows[:, 4] * rows[:, 5:].max(axis=1)
        confident = rows[scores > PEER_SCORE]
        boxes = confident[:, :4].copy()
        boxes[:, :2] -= boxes[:, 2:] / 2  # centre to top-left corner
        cv2.dnn.NMSBoxes(boxes.tolist(), scores[scores > PEER_SCORE].tolist(), PEER_SCORE, PEER_IOU)


class LimitRun(_PacedFeeds):
    """Decode keyframes only; run the bare session at feedtag's input shape on each: the
    model's square, or for a model with dynamic height and width the stride-aligned rectangle
    feedtag letterboxes that frame into."""

    keyframes_only = True

    def __init__(self, sources: list[Path], model: ModelInfo, backend: str = "onnxruntime") -> None:
        super().__init__(sources)
        self.long_side = model.input_size
        self.stride = model.input_stride
        # feedtag's runtime: the bare inference of whichever backend feedtag runs on
        self._openvino: OpenVinoRuntime | None = None
        if backend == "openvino":
            self._openvino = OpenVinoRuntime(
                model.path, input_size=model.input_size, streams=available_cores()
            )
        else:
            self.session = open_session(model.path)
            self.input_name = self.session.get_inputs()[0].name

    def analyse(self, frame: av.video.frame.VideoFrame) -> None:
        if self.stride is None:
            width = height = self.long_side
        else:
            width, height = input_shape(frame.width, frame.height, self.long_side, self.stride)
        image = frame.to_ndarray(width=width, height=height, format="rgb24")
        tensor = image.transpose(2, 0, 1)[np.newaxis].astype(np.float32) / 255.0
        if self._openvino is not None:
            self._openvino.run(tensor)
        else:
            self.session.run(None, {self.input_name: tensor})
