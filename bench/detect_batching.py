"""Batch 1 against batched detection: milliseconds per frame and frames per second per core.

Runs the ONNX Runtime backend with one intra-op thread (feedtag's default) on real frames of
vtest.avi, letterboxed, inferred, decoded and mapped back, at several batch sizes, and then
through the BatchScheduler with many cameras submitting at once.

The model is feedtag's default (YOLOv3-tiny COCO, from ``feedtag.vision.models``) when it has
been built into ``$FEEDTAG_MODELS_DIR`` or ``~/.cache/feedtag/models``, or the file given with
``--model``; otherwise a synthetic network of YOLOv3-tiny's shape and cost (the same
convolutions at 416x416, random FP32 weights, 2535 output rows of 85) built with onnx.helper.

    .venv/bin/python bench/detect_batching.py [--model PATH --layout L] [--seconds S] [--json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from feedtag.bench.footage import vtest_path
from feedtag.vision.batching import BatchScheduler
from feedtag.vision.onnx_backend import LetterboxDetector, OnnxRuntime

COCO_CLASSES = 80
BATCH_SIZES = (1, 2, 4, 8, 16)


@dataclass
class Row:
    mode: str
    batch: int
    frames: int
    ms_per_frame: float  # wall time per frame
    frames_per_s: float
    frames_per_core_s: float  # frames per second of process CPU time
    infer_share: float  # fraction of wall time inside the runtime's run()


class TimedRuntime:
    """Wraps a runtime to add up the time spent in inference proper."""

    def __init__(self, runtime: OnnxRuntime) -> None:
        self.runtime = runtime
        self.model_input = runtime.model_input
        self.seconds = 0.0
        self.lock = threading.Lock()

    def run(self, batch: Any) -> list[Any]:
        started = time.perf_counter()
        try:
            return self.runtime.run(batch)
        finally:
            with self.lock:
                self.seconds += time.perf_counter() - started


class _GraphBuilder:
    """Random-weight layers appended to one ONNX graph; each method returns its output."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def constant(self, value: np.ndarray) -> str:
        name = self.name("const")
        self.weights.append(numpy_helper.from_array(value, name))
        return name

    def node(self, kind: str, inputs: list[str], **attributes: Any) -> str:
        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], **attributes))
        return out

    def conv(
        self, x: str, cin: int, cout: int, k: int, *, act: bool = True, bias: float = 0.0
    ) -> str:
        scale = np.sqrt(2.0 / (cin * k * k))
        w = self.constant((self.rng.standard_normal((cout, cin, k, k)) * scale).astype(np.float32))
        b = self.constant(np.full(cout, bias, np.float32))
        y = self.node("Conv", [x, w, b], kernel_shape=[k, k], pads=[k // 2] * 4)
        return self.node("LeakyRelu", [y], alpha=0.1) if act else y

    def pool(self, x: str, stride: int) -> str:
        # Darknet's stride-1 max-pool pads right and bottom to keep the size
        pads = [0, 0, 1, 1] if stride == 1 else [0, 0, 0, 0]
        return self.node("MaxPool", [x], kernel_shape=[2, 2], strides=[stride] * 2, pads=pads)

    def rows(self, x: str, side: int, classes: int) -> str:
        """[B, 3*(5+C), side, side] -> [B, 3*side*side, 5+C], a decoded YOLO output's layout."""
        grid = self.node("Reshape", [x, self.constant(np.array([0, 3, 5 + classes, side * side]))])
        cells = self.node("Transpose", [grid], perm=[0, 1, 3, 2])
        return self.node("Reshape", [cells, self.constant(np.array([0, -1, 5 + classes]))])


def synthetic_yolov3_tiny(path: Path, size: int = 416, classes: int = COCO_CLASSES) -> Path:
    """YOLOv3-tiny's layers (conv with folded batch-norm, leaky ReLU, max-pool; two heads,
    the second upsampled and concatenated) with random weights: the cost, not the answers.
    The heads' bias of -6 keeps scores near 0, like a quiet scene, so NMS costs little."""
    g = _GraphBuilder()
    x, route = "images", ""
    for cin, cout in ((3, 16), (16, 32), (32, 64), (64, 128), (128, 256), (256, 512)):
        x = g.conv(x, cin, cout, 3)
        route = x if cout == 256 else route  # the 26x26 features the second head reuses
        x = g.pool(x, 2 if cout < 512 else 1)
    neck = g.conv(g.conv(x, 512, 1024, 3), 1024, 256, 1)
    outputs = 3 * (5 + classes)
    head1 = g.conv(g.conv(neck, 256, 512, 3), 512, outputs, 1, act=False, bias=-6.0)
    scales = g.constant(np.array([1, 1, 2, 2], np.float32))
    up = g.node("Resize", [g.conv(neck, 256, 128, 1), "", scales], mode="nearest")
    both = g.node("Concat", [up, route], axis=1)
    head2 = g.conv(g.conv(both, 384, 256, 3), 256, outputs, 1, act=False, bias=-6.0)
    rows = [g.rows(head1, size // 32, classes), g.rows(head2, size // 16, classes)]
    g.nodes.append(helper.make_node("Sigmoid", [g.node("Concat", rows, axis=1)], ["output"]))
    graph = helper.make_graph(
        g.nodes,
        "synthetic_yolov3_tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])],
        [
            helper.make_tensor_value_info(
                "output", TensorProto.FLOAT, ["batch", "rows", 5 + classes]
            )
        ],
        g.weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def find_default_model() -> tuple[Path, str, tuple[str, ...]] | None:
    try:  # the model registry is optional here: the bench runs without it
        models: Any = importlib.import_module("feedtag.vision.models")
    except ImportError:
        return None
    wanted = models.model_name()
    for info in models.list_models(models.default_models_dir()):
        if info.name == wanted:
            return info.path, info.layout, info.class_names
    return None


def real_frames(count: int) -> list[np.ndarray]:
    """Frames of vtest.avi (people walking) at 768x576; random frames when it is missing."""
    try:
        frames = []
        with av.open(str(vtest_path())) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index % 10 == 0:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == count:
                    break
        return frames
    except Exception as exc:  # noqa: BLE001 - any failure: fall back to noise, and say so
        sys.stderr.write(f"vtest.avi unavailable ({exc}); using random frames\n")
        rng = np.random.default_rng(1)
        return [rng.integers(0, 255, (576, 768, 3), np.uint8) for _ in range(count)]


def measure(
    seconds: float, call: Any, frames_per_call: int, runtime: TimedRuntime
) -> tuple[int, float, float, float]:
    """(frames, wall s, CPU s, inference s) over at least ``seconds`` and 3 calls."""
    call()  # warm-up: allocations for this batch size
    runtime.seconds = 0.0
    frames, calls = 0, 0
    wall, cpu = time.perf_counter(), time.process_time()
    while calls < 3 or time.perf_counter() - wall < seconds:
        call()
        frames += frames_per_call
        calls += 1
    return frames, time.perf_counter() - wall, time.process_time() - cpu, runtime.seconds


def row(mode: str, batch: int, measured: tuple[int, float, float, float]) -> Row:
    frames, wall, cpu, infer = measured
    return Row(mode, batch, frames, 1000 * wall / frames, frames / wall, frames / cpu, infer / wall)


def bench_direct(
    detector: LetterboxDetector, runtime: TimedRuntime, frames: list[np.ndarray], seconds: float
) -> list[Row]:
    rows = []
    for batch in BATCH_SIZES:
        chunk = frames[:batch]
        result = measure(seconds, lambda chunk=chunk: detector.detect(chunk), batch, runtime)
        rows.append(row("detect(batch)", batch, result))
    return rows


def bench_scheduler(
    detector: LetterboxDetector,
    runtime: TimedRuntime,
    frames: list[np.ndarray],
    seconds: float,
    cameras: int,
) -> list[Row]:
    """``cameras`` threads, each submitting its next frame when the last one is answered."""
    rows = []
    for max_batch in (1, 8):
        with BatchScheduler(detector, max_batch=max_batch, max_wait_s=0.02) as scheduler:

            def one_round(scheduler: BatchScheduler = scheduler) -> None:
                futures = [
                    scheduler.submit(f"cam{i}", frames[i % len(frames)]) for i in range(cameras)
                ]
                for future in futures:
                    future.result(timeout=60)

            result = measure(seconds, one_round, cameras, runtime)
        rows.append(row(f"scheduler, {cameras} cameras", max_batch, result))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, help="an ONNX file (default: feedtag's default model, else synthetic)"
    )
    parser.add_argument("--layout", default="yolo-decoded")
    parser.add_argument("--classes", type=int, default=COCO_CLASSES, help="class count of --model")
    parser.add_argument("--seconds", type=float, default=4.0, help="per configuration")
    parser.add_argument("--cameras", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    names: tuple[str, ...] = tuple(f"class{i}" for i in range(args.classes))
    with tempfile.TemporaryDirectory() as scratch:
        if args.model is not None:
            model, layout, source = args.model, args.layout, str(args.model)
        elif (found := find_default_model()) is not None:
            model, layout, names = found
            source = f"default model {model}"
        else:
            model = synthetic_yolov3_tiny(Path(scratch) / "synthetic.onnx")
            layout, source = (
                "yolo-decoded",
                "synthetic YOLOv3-tiny-shaped FP32 network (no default model built)",
            )
        runtime = TimedRuntime(OnnxRuntime(Path(model), intra_op_num_threads=1))
        detector = LetterboxDetector(
            runtime,
            runtime.model_input,
            names,
            layout=layout,
            max_batch=max(BATCH_SIZES),
            description=str(model),
        )
        frames = real_frames(max(BATCH_SIZES))
        rows = bench_direct(detector, runtime, frames, args.seconds)
        rows += bench_scheduler(detector, runtime, frames, args.seconds, args.cameras)

    if args.json:
        sys.stdout.write(json.dumps({"model": source, "rows": [asdict(r) for r in rows]}) + "\n")
        return 0
    providers = runtime.runtime.providers
    out = [
        f"model: {source}",
        f"input: {runtime.model_input.describe()}, providers {providers}, intra-op threads 1,"
        f" {os.cpu_count()} cores",
        f"frames: {frames[0].shape[1]}x{frames[0].shape[0]} RGB; letterbox, inference, decode,"
        " NMS, unletterbox",
        "",
        "| mode | batch | ms/frame | frames/s | frames/s per core | vs batch 1 | in inference |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    single = rows[0].frames_per_core_s
    for r in rows:
        out.append(
            f"| {r.mode} | {r.batch} | {r.ms_per_frame:.1f} | {r.frames_per_s:.1f}"
            f" | {r.frames_per_core_s:.1f} | {r.frames_per_core_s / single:.2f}x"
            f" | {100 * r.infer_share:.0f}% |"
        )
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
