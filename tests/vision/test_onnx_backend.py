"""The ONNX Runtime backend on small graphs built here: batched, one-by-one and fixed-batch
models agree; class filters; provider choice; inputs it refuses and the errors it raises (each
naming the model file and the input it expects); and the optional OpenVINO backend on the same
models."""

from __future__ import annotations

import importlib.util
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from feedtag.errors import DetectorError
from feedtag.vision.detector import Detector
from feedtag.vision.onnx_backend import (
    OnnxDetector,
    choose_providers,
    detector_error_from_ort,
)
from feedtag.vision.openvino_backend import (
    INSTALL_HINT,
    OpenVinoDetector,
    OpenVinoRuntime,
    import_openvino,
)

from .test_decoders import CLASSES, SQUARE, SQUARE_CLASS, frame_with_square, square_finder

# frames of several shapes, each with its own rectangle
FRAMES = [
    (frame_with_square((10, 20, 90, 100), 160, 120), (10, 20, 90, 100)),
    (frame_with_square((200, 30, 320, 200), 640, 360), (200, 30, 320, 200)),
    (frame_with_square((5, 5, 30, 60), 64, 96), (5, 5, 30, 60)),
    (frame_with_square(SQUARE), SQUARE),
    (np.zeros((50, 70, 3), np.uint8), None),  # nothing white: no rectangle
]


def images() -> list[np.ndarray]:
    return [image for image, _ in FRAMES]


def assert_same(first: list[Any], second: list[Any]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)
        np.testing.assert_array_equal(a.class_id, b.class_id)


def plain_model(path: Path, inputs: list[tuple[str, int, list[int | str]]]) -> Path:
    """A model with the given inputs whose output is its first input: enough to load."""
    values = [helper.make_tensor_value_info(name, kind, shape) for name, kind, shape in inputs]
    output = helper.make_tensor_value_info("out", inputs[0][1], inputs[0][2])
    graph = helper.make_graph(
        [helper.make_node("Identity", [inputs[0][0]], ["out"])], "plain", values, [output]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


# -- batching inside the backend ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch", "max_batch"),
    [("N", 16), ("N", 2), (1, 16), (4, 16)],
    ids=["dynamic", "dynamic-chunks-of-2", "fixed-1-one-by-one", "fixed-4-padded"],
)
def test_batched_and_one_by_one_agree(tmp_path: Path, batch: int | str, max_batch: int) -> None:
    reference = OnnxDetector(square_finder(tmp_path / "ref.onnx", "yolo-decoded", batch=1), CLASSES)
    expected = [reference.detect([image])[0] for image in images()]
    model = square_finder(tmp_path / "m.onnx", "yolo-decoded", batch=batch)
    detector = OnnxDetector(model, CLASSES, max_batch=max_batch)
    assert detector.model_input.batch == (None if batch == "N" else batch)
    found = detector.detect(images())
    assert_same(found, expected)
    for detections, (image, square) in zip(found, FRAMES, strict=True):
        squares = detections.xyxy[detections.class_id == SQUARE_CLASS]
        if square is None:
            assert len(squares) == 0
        else:
            height, width = image.shape[:2]
            assert squares[0] == pytest.approx(square, abs=max(1.0, 1.5 * max(width, height) / 128))


def test_float16_input_model_gives_the_same_boxes(tmp_path: Path) -> None:
    full = OnnxDetector(square_finder(tmp_path / "f32.onnx", "yolo-decoded"), CLASSES)
    half = OnnxDetector(
        square_finder(tmp_path / "f16.onnx", "yolo-decoded", input_dtype=TensorProto.FLOAT16),
        CLASSES,
    )
    assert half.model_input.dtype == np.float16
    assert_same(half.detect(images()), full.detect(images()))


def test_dynamic_height_and_width_take_input_size(tmp_path: Path) -> None:
    model = square_finder(tmp_path / "m.onnx", "yolo-decoded", size="S")
    detector = OnnxDetector(model, CLASSES, input_size=128)
    assert detector.model_input.size == 128
    (found,) = detector.detect([frame_with_square()])
    assert found.xyxy[0] == pytest.approx(SQUARE, abs=1.0)


def test_empty_batch_gives_no_results(tmp_path: Path) -> None:
    detector = OnnxDetector(square_finder(tmp_path / "m.onnx", "yolo-decoded"), CLASSES)
    assert detector.detect([]) == []


def test_it_is_a_detector(tmp_path: Path) -> None:
    detector: Detector = OnnxDetector(square_finder(tmp_path / "m.onnx", "yolo-decoded"), CLASSES)
    assert tuple(detector.class_names) == CLASSES


# -- class filter ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("default", "per_call", "expected"),
    [
        (None, None, [SQUARE_CLASS, 0]),
        ({SQUARE_CLASS}, None, [SQUARE_CLASS]),
        (None, {0}, [0]),
        ({SQUARE_CLASS}, {0}, [0]),  # the call's filter replaces the default
        (None, {2}, []),
        (None, set(), []),
    ],
)
def test_class_filter(
    tmp_path: Path, default: set[int] | None, per_call: set[int] | None, expected: list[int]
) -> None:
    model = square_finder(tmp_path / "m.onnx", "yolo-decoded")
    detector = OnnxDetector(model, CLASSES, classes=default)
    (found,) = detector.detect([frame_with_square()], classes=per_call)
    assert found.class_id.tolist() == expected


def test_class_filter_rejects_unknown_ids(tmp_path: Path) -> None:
    detector = OnnxDetector(square_finder(tmp_path / "m.onnx", "yolo-decoded"), CLASSES)
    with pytest.raises(ValueError, match=r"class ids in 0..2, got \[3, 7\]"):
        detector.detect([frame_with_square()], classes={7, 3, 1})
    with pytest.raises(ValueError, match=r"got \[-1\]"):
        OnnxDetector(tmp_path / "m.onnx", CLASSES, classes=[-1])


# -- what it refuses ------------------------------------------------------------------------------


def _garbage(path: Path) -> Path:
    path.write_bytes(b"this is not a protobuf \xff\xfe")
    return path


def _two_inputs(path: Path) -> Path:
    shape: list[int | str] = [1, 3, 64, 64]
    return plain_model(path, [("a", TensorProto.FLOAT, shape), ("b", TensorProto.FLOAT, shape)])


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        pytest.param(
            lambda p: p, {}, r"load .*missing\.onnx failed: model file not found", id="missing"
        ),
        pytest.param(
            _garbage,
            {},
            r"load .*m\.onnx failed: not a valid ONNX model file: .*Protobuf",
            id="garbage",
        ),
        pytest.param(
            _two_inputs,
            {},
            r"m\.onnx: expected one image input .* got \['a\[1, 3, 64, 64\] tensor\(float\)', 'b.*: 2 inputs",
            id="two-inputs",
        ),
        pytest.param(
            lambda p: plain_model(p, [("x", TensorProto.FLOAT, [1, 64, 64, 3])]),
            {},
            r"got \['x\[1, 64, 64, 3\] tensor\(float\)'\]: not \[N, 3, H, W\]",
            id="channels-last",
        ),
        pytest.param(
            lambda p: plain_model(p, [("x", TensorProto.FLOAT, [1, 3, 64, 96])]),
            {},
            r"must both be fixed and equal",
            id="not-square",
        ),
        pytest.param(
            lambda p: plain_model(p, [("x", TensorProto.UINT8, [1, 3, 64, 64])]),
            {},
            r"input type tensor\(uint8\)",
            id="uint8-input",
        ),
        pytest.param(
            lambda p: plain_model(p, [("x", TensorProto.FLOAT, ["N", 3, "H", "W"])]),
            {},
            r"dynamic height and width: pass input_size",
            id="dynamic-size-not-given",
        ),
        pytest.param(
            lambda p: square_finder(p, "yolo-decoded"),
            {"input_size": 96},
            r"input_size=96 given, but the model's input side is fixed",
            id="input-size-contradicts-model",
        ),
        pytest.param(
            lambda p: square_finder(p, "yolo-decoded"),
            {"providers": ["CUDAExecutionProvider"]},
            r"execution providers \['CUDAExecutionProvider'\] are not available; this ONNX Runtime has \[",
            id="provider-not-available",
        ),
        pytest.param(
            lambda p: square_finder(p, "yolo-decoded"),
            {"layout": "yolov5"},
            r"unknown output layout 'yolov5'",
            id="unknown-layout",
        ),
    ],
)
def test_load_errors_name_the_model_and_the_problem(
    tmp_path: Path, make: Any, kwargs: dict[str, Any], message: str
) -> None:
    path = make(tmp_path / ("missing.onnx" if "missing" in message else "m.onnx"))
    with pytest.raises(DetectorError, match=message):
        OnnxDetector(path, CLASSES, **kwargs)


def test_runtime_failure_names_the_model_and_its_input(tmp_path: Path) -> None:
    # the output is reshaped to a fixed batch of 1: the model loads and runs one frame, and
    # ONNX Runtime fails inside the graph on two
    model = square_finder(tmp_path / "m.onnx", "yolo-decoded", reshape_output=[1, 5, 8])
    detector = OnnxDetector(model, CLASSES)
    with pytest.raises(DetectorError) as caught:
        detector.detect(images()[:2])
    text = str(caught.value)
    assert f"inference with {model} on input [2, 3, 128, 128] float32 failed:" in text
    assert "(model input images[N, 3, 128, 128] float32)" in text
    assert "[ONNXRuntimeError]" not in text  # the status prefix is stripped, the detail kept
    assert isinstance(caught.value.__cause__, Exception)


def test_a_model_that_drops_the_batch_is_caught(tmp_path: Path) -> None:
    model = square_finder(tmp_path / "m.onnx", "yolo-decoded", reshape_output=[1, -1, 8])
    detector = OnnxDetector(model, CLASSES)
    with pytest.raises(DetectorError, match="2 images in, 1 results out"):
        detector.detect(images()[:2])


def test_a_bad_image_is_named_by_its_index(tmp_path: Path) -> None:
    detector = OnnxDetector(square_finder(tmp_path / "m.onnx", "yolo-decoded"), CLASSES)
    with pytest.raises(ValueError, match=r"image 1: expected image as uint8"):
        detector.detect([frame_with_square(), np.zeros((10, 10, 3), np.float32)])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "NoSuchFile",
            "[ONNXRuntimeError] : 3 : NO_SUCHFILE : Load model from x failed",
            "model file not found: Load model from x failed",
        ),
        (
            "InvalidArgument",
            "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: images",
            "the input was rejected: Got invalid dimensions for input: images",
        ),
        (
            "Fail",
            "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code\nmore lines",
            "ONNX Runtime failed: Non-zero status code",
        ),
        (
            "EPFail",
            "[ONNXRuntimeError] : 11 : EP_FAIL : CUDA failure 2: out of memory",
            "the execution provider failed: CUDA failure 2: out of memory",
        ),
        ("RuntimeError", "something else", "inference failed: something else"),
        ("RuntimeError", "", "inference failed: RuntimeError"),
    ],
)
def test_ort_error_table(name: str, text: str, expected: str) -> None:
    kind = type(name, (Exception,), {})
    error = detector_error_from_ort(kind(text), "run m.onnx", "model input x")
    assert str(error) == f"run m.onnx failed: {expected} (model input x)"


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        (["CPUExecutionProvider"], ["CPUExecutionProvider"]),
        (["AzureExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
        (
            ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"],
            ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        ),
        (
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
        ),
        ([], ["CPUExecutionProvider"]),
    ],
)
def test_provider_preference(available: list[str], expected: list[str]) -> None:
    assert choose_providers(available) == expected


def test_session_uses_the_providers_it_has(tmp_path: Path) -> None:
    detector = OnnxDetector(square_finder(tmp_path / "m.onnx", "yolo-decoded"), CLASSES)
    assert detector.providers[-1] == "CPUExecutionProvider"
    # options for a provider this machine lacks are ignored: one config serves every machine
    tuned = OnnxDetector(
        tmp_path / "m.onnx",
        CLASSES,
        provider_options={
            "TensorrtExecutionProvider": {"trt_engine_cache_enable": True},
            "CPUExecutionProvider": {"use_arena": "1"},
        },
    )
    assert tuned.providers == detector.providers
    with pytest.raises(ValueError, match="intra_op_num_threads >= 1, got 0"):
        OnnxDetector(tmp_path / "m.onnx", CLASSES, intra_op_num_threads=0)
    with pytest.raises(ValueError, match="at least one class name"):
        OnnxDetector(tmp_path / "m.onnx", [])


# -- OpenVINO -------------------------------------------------------------------------------------

OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(
    not OPENVINO, reason=f"openvino is not installed ({INSTALL_HINT}); it is optional, not in CI"
)


def test_openvino_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an absent package looks like
    with pytest.raises(
        DetectorError, match=r"needs the openvino package: pip install 'feedtag\[openvino\]'"
    ):
        import_openvino()
    with pytest.raises(DetectorError, match="needs the openvino package"):
        OpenVinoDetector("any.onnx", CLASSES)


@needs_openvino
@pytest.mark.parametrize("layout", ["yolo-decoded", "yolov8", "yolox"])
def test_openvino_agrees_with_onnx_runtime(tmp_path: Path, layout: str) -> None:
    scale = 255.0 if layout == "yolox" else 1.0
    model = square_finder(tmp_path / "m.onnx", layout, pixel_scale=scale)
    expected = OnnxDetector(model, CLASSES, layout=layout).detect(images())
    detector = OpenVinoDetector(model, CLASSES, layout=layout, max_batch=2)
    assert_same(detector.detect(images()), expected)


@needs_openvino
def test_openvino_serves_several_threads_at_once_from_its_requests(tmp_path: Path) -> None:
    """The batch scheduler's workers call one detector at once: with a stream (and a request)
    per worker, calls run beside each other, more callers than streams wait for a free
    request, and every result is its own frame's."""
    model = square_finder(tmp_path / "m.onnx", "yolo-decoded")
    expected = OnnxDetector(model, CLASSES).detect(images())
    detector = OpenVinoDetector(model, CLASSES, streams=2)
    assert detector.streams == 2
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: detector.detect(images()), range(12)))
    for result in results:
        assert_same(result, expected)
    with pytest.raises(ValueError, match="streams >= 1"):
        OpenVinoDetector(model, CLASSES, streams=0)


@needs_openvino
def test_openvino_prepares_every_request_for_a_new_shape_before_sharing_them(
    tmp_path: Path,
) -> None:
    """The first call with an input shape runs each request on it, alone; calls from many
    threads with shapes none of the requests has seen all finish, with their own results."""
    model = square_finder(tmp_path / "m.onnx", "yolo-decoded")
    detector = OpenVinoDetector(model, CLASSES, streams=2, warm_up=False)
    runtime = detector.runtime
    assert isinstance(runtime, OpenVinoRuntime)
    assert runtime.streams == 2
    batch = np.zeros((2, 3, 128, 128), np.float32)
    runtime.run(batch)
    requests = [runtime._free.get() for _ in range(runtime.streams)]  # the whole pool
    assert [tuple(r.get_input_tensor(0).shape) for r in requests] == [batch.shape] * 2
    for request in requests:
        runtime._free.put(request)

    expected = OnnxDetector(model, CLASSES).detect(images())
    # batches of 1, 3, 4 and 5 images are shapes no request has run; threads start together
    sizes = [1, 3, 4, 5] * 4
    with ThreadPoolExecutor(len(sizes)) as pool:
        results = list(pool.map(lambda n: detector.detect(images()[:n]), sizes, timeout=60))
    for got, size in zip(results, sizes, strict=True):
        assert_same(got, expected[:size])


@needs_openvino
def test_openvino_errors_are_detector_errors(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match=r"load .*m\.onnx failed: Unable to read the model"):
        OpenVinoDetector(_garbage(tmp_path / "m.onnx"), CLASSES)
    with pytest.raises(DetectorError, match="model file not found"):
        OpenVinoDetector(tmp_path / "missing.onnx", CLASSES)
    with pytest.raises(DetectorError, match=r"'yolo-decoded': expected output shape"):
        OpenVinoDetector(square_finder(tmp_path / "v8.onnx", "yolov8"), CLASSES)
