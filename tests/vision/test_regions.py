"""Active-region inference: the crop geometry, what is carried forward, when the whole frame
runs, the detector at a region's scale (with the default model on real footage), and the
per-camera step and the engine's vision stage running crops."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from feedtag.config import validate_config
from feedtag.config.models import DetectorConfig, RegionsConfig
from feedtag.core import Detections, Frame
from feedtag.runtime.detect import detect_stream
from feedtag.runtime.detection import default_model_info
from feedtag.runtime.step import CameraStep
from feedtag.runtime.vision import VisionConsumer
from feedtag.samples import vtest_path
from feedtag.vision.decoders import pairwise_iou
from feedtag.vision.gate import ChangeGate
from feedtag.vision.letterbox import input_shape
from feedtag.vision.onnx_backend import LetterboxDetector, ModelInput, OnnxDetector
from feedtag.vision.regions import Crop, RegionPlanner, active_box, fit_crop, heading
from feedtag.vision.tracker import ByteTracker

from ..runtime.test_vision import run

GRID = (416, 32)
#: whole-frame detections this sure are found by a crop's run too
CONFIDENT = 0.7
FRAME = (640, 360)
SCALE = 416 / 640


def boxes(*rows: tuple[float, float, float, float], ids: list[int] | None = None) -> Detections:
    count = len(rows)
    return Detections(
        np.array(rows, np.float32).reshape(-1, 4),
        np.full(count, 0.9, np.float32),
        np.zeros(count, np.int32),
        None if ids is None else np.array(ids, np.int64),
    )


@pytest.mark.parametrize("seed", range(5))
def test_every_crop_is_stride_aligned_inside_the_frame_and_holds_its_box(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(200):
        x0, y0 = rng.uniform(0, 600), rng.uniform(0, 330)
        box = (x0, y0, min(640.0, x0 + rng.uniform(4, 300)), min(360.0, y0 + rng.uniform(4, 200)))
        crop = fit_crop(box, FRAME, GRID, max_area=0.6)
        if crop is None:
            continue
        assert 0 <= crop.x0 < crop.x1 <= 640 and 0 <= crop.y0 < crop.y1 <= 360
        assert crop.x0 <= box[0] + 1 and crop.x1 >= box[2] - 1, (box, crop)
        assert crop.y0 <= box[1] + 1 and crop.y1 >= box[3] - 1, (box, crop)
        width, height = crop.x1 - crop.x0, crop.y1 - crop.y0
        model_w, model_h = round(width * crop.scale), round(height * crop.scale)
        # the crop fills its model input to within a pixel, at the whole frame's scale
        assert crop.scale == pytest.approx(SCALE)
        assert model_w % 32 in (0, 1, 31) and model_h % 32 in (0, 1, 31), (model_w, model_h)
        assert model_w * model_h <= 0.6 * 416 * 256 + 64 * 32


def test_a_crop_too_large_to_save_enough_is_refused() -> None:
    assert fit_crop((0, 0, 500, 300), FRAME, GRID, max_area=0.6) is None
    assert fit_crop((0, 0, 500, 300), FRAME, GRID, max_area=1.0) is not None


def test_the_active_box_takes_in_the_objects_the_change_touches_and_where_tracks_head() -> None:
    changed = np.zeros((45, 80), bool)
    changed[20, 40] = True  # one cell: pixels 320-328 x 160-168
    touched = (300.0, 150.0, 340.0, 250.0)  # overlaps that cell: taken in whole
    apart = (10.0, 10.0, 40.0, 40.0)  # a parked car far from it: not
    before = boxes(touched, apart)
    box = active_box(changed, before, Detections.empty(), FRAME, margin_px=0)
    assert box == (300.0, 150.0, 340.0, 250.0)
    walker = heading(boxes((100, 100, 120, 150), ids=[3]), boxes((110, 100, 130, 150), ids=[3]), 5)
    assert walker.xyxy.tolist() == [[110, 100, 140, 150]]  # one more 10 px step to the right
    box = active_box(None, before, walker, FRAME, margin_px=8)
    assert box == (102.0, 92.0, 148.0, 158.0)
    assert (
        active_box(np.zeros((45, 80), bool), before, Detections.empty(), FRAME, margin_px=8) is None
    )


def test_merge_carries_forward_what_lies_outside_the_crop_only() -> None:
    crop = Crop(200, 0, 400, 200, SCALE)
    before = boxes((10, 10, 60, 40), (250, 50, 280, 120), (190, 50, 230, 100), ids=[1, 2, 3])
    found = boxes((20, 60, 50, 130))  # in crop pixels: the walker, moved
    merged = crop.merge(crop.to_frame(found), before, FRAME)
    assert merged.tracker_id is None  # ids come from the tracker again
    assert merged.xyxy.tolist() == [
        [220, 60, 250, 130],  # found, in frame pixels
        [10, 10, 60, 40],  # outside the crop: carried forward
        # (250, 50, 280, 120) lay inside the crop and was not found again: gone;
        # (190, 50, 230, 100) is three quarters inside: looked for, so gone too
    ]


def test_a_box_cut_by_the_crop_edge_gives_way_to_the_carried_object() -> None:
    """A parked car reaching 20 px into a crop made for someone beside it: the crop's run sees
    part of the car, cut at the crop's edge; the car's whole box, carried, stands for it."""
    crop = Crop(200, 0, 400, 200, SCALE)
    before = boxes((120, 100, 220, 160))  # mostly outside: carried
    found = crop.to_frame(boxes((0, 100, 20, 160), (100, 20, 130, 90)))  # cut part, walker
    merged = crop.merge(found, before, FRAME)
    assert merged.xyxy.tolist() == [[300, 20, 330, 90], [120, 100, 220, 160]]
    # at the frame's own edge nothing is cut: a box there is kept
    edge = Crop(0, 0, 200, 200, SCALE)
    kept = edge.merge(edge.to_frame(boxes((0, 100, 20, 160))), boxes((0, 90, 30, 170)), FRAME)
    assert len(kept) == 1 and kept.xyxy[0].tolist() == [0, 100, 20, 160]


def test_the_planner_runs_whole_frames_first_on_refresh_when_due_and_when_too_large() -> None:
    planner = RegionPlanner(GRID, full_every_s=4.0, max_area=0.6, margin=0.0)
    small = np.zeros((45, 80), bool)
    small[10:12, 10:12] = True
    large = np.ones((45, 80), bool)
    none = Detections.empty()

    def plan(t: float, reason: str, changed: npt.NDArray[np.bool_]) -> Crop | None:
        return planner.plan(t, reason, changed, FRAME, before=none, moved=none)

    assert plan(0.0, "first", small) is None
    assert plan(1.0, "changed", small) is not None
    assert plan(2.0, "changed", large) is None  # it would not save enough: the whole frame
    assert plan(3.0, "refresh", small) is None
    assert plan(4.0, "changed", small) is not None
    assert plan(6.5, "changed", small) is not None
    assert plan(7.0, "changed", small) is None  # 4 s since the last whole frame
    assert plan(2.0, "changed", small) is None  # time went back (a file looped): start over
    assert (planner.crops, planner.whole) == (3, 5)


# --- the detector at a region's scale -------------------------------------------------------


class BlobFinder:
    """A model behind the :class:`InferenceRuntime` seam: each white blob (channel 0 above
    0.75, blobs apart by columns) of each input is one ``yolo-decoded`` row of class 0; it
    records the input shape of every batch."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def run(self, batch: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
        self.shapes.append(batch.shape)
        rows = np.zeros((len(batch), 4, 7), np.float32)
        for index, tensor in enumerate(batch):
            white = tensor[0] > 0.75
            columns = np.flatnonzero(white.any(axis=0))
            groups = np.split(columns, np.flatnonzero(np.diff(columns) > 2) + 1)
            for slot, cols in enumerate(g for g in groups if len(g)):
                ys = np.flatnonzero(white[:, cols].any(axis=1))
                x1, x2, y1, y2 = cols[0], cols[-1] + 1, ys[0], ys[-1] + 1
                rows[index, slot] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, 1, 1, 0]
        return [rows]


def blob_detector(runtime: BlobFinder) -> LetterboxDetector:
    model_input = ModelInput("images", None, 416, np.dtype(np.float32), dynamic_size=True)
    return LetterboxDetector(runtime, model_input, ("person", "car"), input_stride=32)


def test_a_region_runs_in_its_own_smaller_input_at_the_frames_scale() -> None:
    runtime = BlobFinder()
    detector = blob_detector(runtime)
    assert detector.region_grid() == GRID
    image = np.full((360, 640, 3), 40, np.uint8)
    image[100:200, 300:340] = 255
    crop = fit_crop((290.0, 90.0, 350.0, 210.0), FRAME, GRID, max_area=0.6)
    assert crop is not None
    (whole,) = detector.detect([image])
    (part,) = detector.detect([crop.cut(image)], scales=[crop.scale])
    assert crop.to_frame(part).xyxy[0] == pytest.approx(whole.xyxy[0], abs=2)
    assert whole.xyxy[0] == pytest.approx((300, 100, 340, 200), abs=2)
    assert runtime.shapes[0][2:] == (256, 416)
    assert runtime.shapes[1][2:] == (128, 128)  # 60 x 120 px at 0.65: 4 x 4 strides at least
    with pytest.raises(ValueError, match="expected 1 scales, got 2"):
        detector.detect([image], scales=[None, 1.0])


def vtest_frame() -> npt.NDArray[np.uint8]:
    """A busy frame of vtest.avi, its 16:9 middle at 640x360, as ingest delivers it."""
    import av

    from feedtag.bench.footage import fit_frame

    with av.open(str(vtest_path())) as container:
        for index, decoded in enumerate(container.decode(video=0)):
            if index == 200:
                fitted: npt.NDArray[np.uint8] = fit_frame(decoded, 640, 360).to_ndarray(
                    format="rgb24"
                )
                return fitted
    raise AssertionError("vtest.avi has fewer than 200 frames")


def test_the_default_model_finds_in_a_region_what_it_finds_there_in_the_whole_frame(
    models_dir: Any,
) -> None:
    """Real footage, the default INT8 model: every person the whole-frame run finds with
    confidence inside a crop is found by the crop's own run, in the same place. (A borderline
    detection, confidence near the threshold, may come and go between the two runs, as it
    does between consecutive frames: 6 of 50 checked on five vtest frames. The presence
    benchmark measures what that costs: docs/performance.md.)"""
    info = default_model_info(DetectorConfig(models_dir=models_dir, precision="int8"))
    detector = OnnxDetector(
        info.path,
        list(info.class_names),
        layout=info.layout,
        input_size=info.input_size,
        input_stride=info.input_stride,
    )
    image = vtest_frame()
    (whole,) = detector.detect([image])
    people = whole.select((whole.class_id == 0) & (whole.confidence >= CONFIDENT))
    assert len(people) >= 3
    compared = 0
    for box in people.xyxy:
        crop = fit_crop(tuple(float(v) for v in box), FRAME, GRID, max_area=0.6)  # type: ignore[arg-type]
        assert crop is not None
        inside = crop.inside_share(people.xyxy) == 1.0
        (part,) = detector.detect([crop.cut(image)], scales=[crop.scale])
        found = crop.to_frame(part.select(part.class_id == 0))
        shape = input_shape(crop.x1 - crop.x0, crop.y1 - crop.y0, 416)
        assert detector.input_shape(crop.cut(image), crop.scale) < shape  # a smaller input
        iou = pairwise_iou(people.xyxy[inside], found.xyxy)
        assert (iou.max(axis=1) >= 0.5).all(), iou
        compared += int(inside.sum())
    assert compared >= len(people)


# --- the step and the engine's vision stage ---------------------------------------------


def scene_frame(index: int, walker_x: int) -> Frame:
    """640x360: a parked car (a white blob, left) and a walker (right) who moves."""
    image = np.full((360, 640, 3), 60, np.uint8)
    image[250:300, 40:140] = 255  # the car
    image[100:180, walker_x : walker_x + 30] = 255  # the walker
    return Frame("yard", index, float(index), 0.0, image)


def test_the_step_runs_crops_around_the_walker_and_keeps_the_parked_car() -> None:
    runtime = BlobFinder()
    detector = blob_detector(runtime)
    planner = RegionPlanner(GRID, full_every_s=4.0, max_area=0.6, margin=0.04)
    step = CameraStep(ChangeGate(), ByteTracker(lost_s=4.0), regions=planner)
    car_ids, walker_xs = set(), []
    for index in range(10):
        frame = scene_frame(index, 400 + 12 * index)
        result, gated = step.run(
            frame,
            lambda image: detector.detect([image])[0],
            lambda image, scale: detector.detect([image], scales=[scale])[0],
        )
        assert not gated
        assert len(result) == 2, (index, result.xyxy)
        car = result.select(result.xyxy[:, 0] < 200)
        assert car.xyxy[0] == pytest.approx((40, 250, 140, 300), abs=2)
        assert car.tracker_id is not None
        car_ids.add(int(car.tracker_id[0]))
        walker_xs.append(float(result.xyxy[result.xyxy[:, 0] >= 200][0, 0]))
    assert walker_xs == pytest.approx([400 + 12 * i for i in range(10)], abs=2)
    car_ids.discard(-1)
    assert len(car_ids) == 1  # one track for the car throughout
    # frames 0, 4 and 8 whole (first, then every 4 s); the others crops without the car
    whole = [shape for shape in runtime.shapes if shape[2:] == (256, 416)]
    assert len(whole) == 3 and len(runtime.shapes) == 10
    assert (planner.whole, planner.crops) == (3, 7)


def test_the_engines_vision_stage_submits_crops_and_merges_them() -> None:
    runtime = BlobFinder()
    detector = blob_detector(runtime)
    camera = validate_config({"cameras": [{"id": "yard", "url": "rtsp://cam/x"}]}).cameras[0]
    consumer = VisionConsumer(detector, validate_config({}).detector, [camera])
    results = run(consumer, [scene_frame(i, 400 + 12 * i) for i in range(6)])
    assert [len(found) for _, found in results] == [2] * 6
    shapes = [shape[2:] for shape in runtime.shapes]
    assert shapes.count((256, 416)) == 2  # frames 0 and 4
    assert len(shapes) == 6 and all(h * w < 256 * 416 * 0.6 for h, w in shapes if h != 256)
    (status,) = consumer.statuses()  # what status and /metrics show
    assert (status.detected, status.cropped) == (6, 4)
    assert status.to_dict()["cropped"] == 4
    off = validate_config(
        {
            "cameras": [
                {"id": "yard", "url": "rtsp://cam/x", "gate": {"regions": {"enabled": False}}}
            ]
        }
    ).cameras[0]
    runtime.shapes.clear()
    run(
        VisionConsumer(detector, validate_config({}).detector, [off]),
        [scene_frame(0, 400), scene_frame(1, 412)],
    )
    assert [shape[2:] for shape in runtime.shapes] == [(256, 416)] * 2


class CostlyCrops(LetterboxDetector):
    """A detector whose runtime does not make regions pay (as OpenVINO's)."""

    @property
    def regions_pay(self) -> bool:
        return False


def test_auto_regions_follow_the_runtime_and_an_explicit_setting_wins() -> None:
    runtime = BlobFinder()
    model_input = ModelInput("images", None, 416, np.dtype(np.float32), dynamic_size=True)
    detector = CostlyCrops(runtime, model_input, ("person", "car"), input_stride=32)
    frames = [scene_frame(i, 400 + 12 * i) for i in range(6)]

    def shapes_run(enabled: object) -> list[tuple[int, ...]]:
        runtime.shapes.clear()
        gate = {} if enabled is None else {"regions": {"enabled": enabled}}
        camera = validate_config(
            {"cameras": [{"id": "yard", "url": "rtsp://cam/x", "gate": gate}]}
        ).cameras[0]
        run(VisionConsumer(detector, validate_config({}).detector, [camera]), frames)
        return [shape[2:] for shape in runtime.shapes]

    assert shapes_run(None) == [(256, 416)] * 6  # auto, the default: whole frames here
    assert shapes_run("auto") == [(256, 416)] * 6
    assert shapes_run(True).count((256, 416)) == 2  # crops on, as the camera says
    # the same for feedtag detect's synchronous step
    runtime.shapes.clear()
    list(
        detect_stream(
            iter(frames), detector, gate=ChangeGate(), track_lost_s=4.0, regions=RegionsConfig()
        )
    )
    assert [shape[2:] for shape in runtime.shapes] == [(256, 416)] * 6
    runtime.shapes.clear()
    list(
        detect_stream(
            iter(frames), blob_detector(runtime), gate=ChangeGate(), track_lost_s=4.0,
            regions=RegionsConfig(),
        )
    )  # fmt: skip
    assert [shape[2:] for shape in runtime.shapes].count((256, 416)) == 2


def test_which_runtimes_make_regions_pay(models_dir: Any) -> None:
    """ONNX Runtime's time follows the input's area; OpenVINO's does not with AMX, and
    without AMX the whole path showed no saving (docs/performance.md): auto runs regions on
    the first only."""
    from feedtag.vision.openvino_backend import OpenVinoDetector

    info = default_model_info(DetectorConfig(models_dir=models_dir, precision="int8"))
    onnx = OnnxDetector(info.path, list(info.class_names), input_size=info.input_size,
                        input_stride=info.input_stride)  # fmt: skip
    openvino = OpenVinoDetector(info.path, list(info.class_names), input_size=info.input_size,
                                input_stride=info.input_stride, warm_up=False)  # fmt: skip
    assert onnx.regions_pay is True
    assert openvino.regions_pay is False
