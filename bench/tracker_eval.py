"""Which tracker feedtag builds on, measured: MOTA, IDF1 and time per frame, side by side.

Ground truth: TUD-Campus and TUD-Stadtmitte (640x480, 25 fps), shipped inside the
``motmetrics`` package. The ground-truth boxes are turned into detections with seeded noise:
each box jittered by 5 % of its size, 10 % of boxes dropped, false positives added, and a
detector-like confidence drawn for each. The same detections go to every implementation at
these rates:

- ``25 fps``: every frame, as recorded;
- ``5 fps``: one frame in five (five runs, one per starting frame);
- ``1 fps``: one frame in 25 (25 runs; the sequences are short, so this is indicative);
- ``1-5 fps jittered``: gaps drawn between 5 and 25 frames (0.2-1 s), ten seeds: the changing
  rate of feedtag's adaptive decoder. Implementations that only count frames are told the mean
  rate; feedtag's wrapper gets the frame times.

Candidates: ``trackers`` ByteTrack (library defaults, fixed-rate mode), the same with frame
times (timestamp mode), supervision 0.30's ByteTrack (removed in 0.31), norfair 2.3 (IoU
distance), and feedtag's ``ByteTracker`` wrapper. supervision 0.30 and norfair (``numpy<2``)
cannot share feedtag's environment; each runs in its own throwaway venv as a worker process
of this script (``--make-venvs DIR`` builds them; ``--python NAME=PATH`` points at them).

Run from the repository root::

    .venv/bin/python bench/tracker_eval.py --make-venvs /tmp/feedtag-tracker-eval

Scoring needs ``motmetrics`` (``scripts/setup.sh --test`` installs it). motmetrics 1.4 still
calls ``np.asfarray``, removed in NumPy 2: :func:`load_motmetrics` adds it back, in this process
only. Workers need only NumPy and their tracking library.
"""

# Candidates import their library inside the function: each runs in its own environment.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

SOURCE_FPS = 25.0
FRAME_SIZE = (640, 480)
SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")

FloatArray = npt.NDArray[np.float64]


def emit(line: str = "") -> None:
    """Print a line of the report (the project's lint keeps ``print`` out of library code)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# -- ground truth and noisy detections ------------------------------------------------------


@dataclass(frozen=True)
class Noise:
    """How ground truth is spoiled into detections. Seeded: same seed, same detections."""

    jitter: float = 0.05  # standard deviation of box position and size, as a fraction of size
    drop: float = 0.10  # probability that a true box is missed
    false_positives_per_frame: float = 0.3  # Poisson mean; person-sized boxes at random places
    confidence_mean: float = 0.75  # true boxes: normal around this, clipped to [0.3, 1]
    confidence_std: float = 0.15


@dataclass(frozen=True)
class GroundTruth:
    """One sequence: per frame number (from 1), the object ids and ``xywh`` boxes."""

    name: str
    frames: dict[int, tuple[npt.NDArray[np.int64], FloatArray]]

    @property
    def last_frame(self) -> int:
        return max(self.frames)


@dataclass(frozen=True)
class Run:
    """One pass of one tracker over a schedule of frames: what it is fed and how to score it."""

    key: str  # "sequence|rate|variant"
    sequence: str
    rate: str
    nominal_fps: float
    frame_numbers: list[int]
    t_s: list[float]
    detections: list[tuple[FloatArray, FloatArray]]  # per frame: xyxy (N, 4), confidence (N,)


def motmetrics_data_dir() -> Path:
    """Where the installed ``motmetrics`` keeps its sample ground truth."""
    spec = importlib.util.find_spec("motmetrics")
    if spec is None or spec.origin is None:
        raise SystemExit("motmetrics is not installed: .venv/bin/pip install motmetrics")
    return Path(spec.origin).parent / "data"


def load_ground_truth(name: str, data_dir: Path | None = None) -> GroundTruth:
    """Read ``<name>/gt.txt`` (MOTChallenge CSV: frame, id, x, y, w, h, flag, ...)."""
    path = (data_dir or motmetrics_data_dir()) / name / "gt.txt"
    rows = np.loadtxt(path, delimiter=",", ndmin=2)
    rows = rows[rows[:, 6] != 0]  # flag 0 marks boxes to ignore
    frames: dict[int, tuple[npt.NDArray[np.int64], FloatArray]] = {}
    for frame in np.unique(rows[:, 0]).astype(int).tolist():
        here = rows[rows[:, 0] == frame]
        frames[frame] = (here[:, 1].astype(np.int64), here[:, 2:6].astype(np.float64))
    return GroundTruth(name, frames)


def seed_for(*parts: object) -> int:
    """A stable seed from names (``hash()`` of a string changes between processes)."""
    return zlib.crc32("|".join(map(str, parts)).encode())


def noisy_detections(
    truth: GroundTruth, frame_number: int, noise: Noise, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Detections for one frame: the truth jittered, some dropped, false positives added."""
    _, xywh = truth.frames.get(frame_number, (np.zeros(0, np.int64), np.zeros((0, 4))))
    keep = rng.random(len(xywh)) >= noise.drop
    boxes = xywh[keep].copy()
    sizes = np.concatenate([boxes[:, 2:4], boxes[:, 2:4]], axis=1)
    boxes += rng.normal(0.0, noise.jitter, boxes.shape) * sizes
    boxes[:, 2:4] = np.maximum(boxes[:, 2:4], 2.0)
    confidence = np.clip(
        rng.normal(noise.confidence_mean, noise.confidence_std, len(boxes)), 0.3, 1.0
    )
    count = int(rng.poisson(noise.false_positives_per_frame))
    if count:
        every_size = np.concatenate([xy[:, 2:4] for _, xy in truth.frames.values()])
        size = every_size[rng.integers(0, len(every_size), count)]
        corner = rng.random((count, 2)) * (np.array(FRAME_SIZE) - size)
        boxes = np.concatenate([boxes, np.concatenate([corner, size], axis=1)])
        confidence = np.concatenate([confidence, rng.uniform(0.3, 0.7, count)])
    xyxy = boxes.copy()
    xyxy[:, 2:4] += xyxy[:, 0:2]
    return xyxy, confidence


def schedules(truth: GroundTruth) -> Iterator[tuple[str, float, str, list[int]]]:
    """``(rate, nominal fps, variant, frame numbers)`` for every run of one sequence."""
    last = truth.last_frame
    yield "25 fps", SOURCE_FPS, "all", list(range(1, last + 1))
    for step, label in ((5, "5 fps"), (25, "1 fps")):
        for offset in range(step):
            yield (
                label,
                SOURCE_FPS / step,
                f"offset {offset}",
                list(range(1 + offset, last + 1, step)),
            )
    for seed in range(10):
        rng = np.random.default_rng(seed_for(truth.name, "jitter", seed))
        frames, frame = [], 1 + int(rng.integers(0, 5))
        while frame <= last:
            frames.append(frame)
            frame += int(rng.integers(5, 26))
        yield "1-5 fps jittered", SOURCE_FPS / 15.0, f"seed {seed}", frames


def make_runs(
    noise: Noise = Noise(),
    sequences: Sequence[str] = SEQUENCES,
    noise_draws: int = 4,
    salt: str = "",
) -> list[Run]:
    """Every run of the evaluation: each schedule with ``noise_draws`` seeded detection sets.

    The sequences are short (71 and 179 frames), so one draw of noise moves IDF1 by several
    points; the table pools several. ``salt`` draws other detections (for tuning on data that
    is not reported).
    """
    runs = []
    for name in sequences:
        truth = load_ground_truth(name)
        for rate, fps, variant, frames in schedules(truth):
            for draw in range(noise_draws):
                rng = np.random.default_rng(seed_for(name, rate, variant, draw, salt))
                runs.append(
                    Run(
                        key=f"{name}|{rate}|{variant}|noise {draw}",
                        sequence=name,
                        rate=rate,
                        nominal_fps=fps,
                        frame_numbers=frames,
                        t_s=[(f - 1) / SOURCE_FPS for f in frames],
                        detections=[noisy_detections(truth, f, noise, rng) for f in frames],
                    )
                )
    return runs


# -- the candidates (run in worker processes; NumPy and the library only) ---------------------

# A tracker step: (xyxy, confidence, t_s) -> (ids, xyxy) of the boxes it reports as tracked.
Step = Callable[[FloatArray, FloatArray, float], tuple[list[int], FloatArray]]


def trackers_bytetrack(nominal_fps: float, *, timestamps: bool) -> tuple[Step, str]:
    """``trackers.ByteTrackTracker`` with its defaults, told the (mean) frame rate."""
    import supervision as sv
    import trackers

    tracker = trackers.ByteTrackTracker(frame_rate=nominal_fps)

    def step(xyxy: FloatArray, confidence: FloatArray, t_s: float) -> tuple[list[int], FloatArray]:
        result = tracker.update(
            sv.Detections(xyxy=xyxy, confidence=confidence, class_id=np.zeros(len(xyxy), int)),
            timestamp=t_s if timestamps else None,
        )
        ids = np.asarray(result.tracker_id)
        keep = ids >= 0
        return ids[keep].tolist(), np.asarray(result.xyxy[keep], np.float64)

    return step, f"trackers {importlib.metadata.version('trackers')}"


def supervision_bytetrack(nominal_fps: float) -> tuple[Step, str]:
    """``supervision.ByteTrack`` (0.30.x, the last with it), told the (mean) frame rate."""
    import supervision as sv

    tracker = sv.ByteTrack(frame_rate=max(1, round(nominal_fps)))  # type: ignore[attr-defined]

    def step(xyxy: FloatArray, confidence: FloatArray, t_s: float) -> tuple[list[int], FloatArray]:
        result = tracker.update_with_detections(
            sv.Detections(xyxy=xyxy, confidence=confidence, class_id=np.zeros(len(xyxy), int))
        )
        ids = np.asarray(result.tracker_id)
        keep = ids >= 0
        return ids[keep].tolist(), np.asarray(result.xyxy[keep], np.float64)

    return step, f"supervision {importlib.metadata.version('supervision')}"


def norfair_tracker(nominal_fps: float) -> tuple[Step, str]:
    """norfair with its IoU distance (IoU > 0.1 to match, as ByteTrack), a 1 s lost buffer."""
    import norfair  # type: ignore[import-not-found]

    updates_per_second = max(2, round(nominal_fps))
    tracker = norfair.Tracker(
        distance_function="iou",
        distance_threshold=0.9,
        hit_counter_max=updates_per_second,
        initialization_delay=1,
    )

    def step(xyxy: FloatArray, confidence: FloatArray, t_s: float) -> tuple[list[int], FloatArray]:
        detections = [
            norfair.Detection(points=box.reshape(2, 2), scores=np.array([c, c]))
            for box, c in zip(xyxy, confidence, strict=True)
        ]
        objects = tracker.update(detections=detections)
        now = {id(d) for d in detections}
        # report what was matched in this frame, at its detected box, as for ByteTrack
        seen = [o for o in objects if o.last_detection is not None and id(o.last_detection) in now]
        boxes = np.array([o.last_detection.points.reshape(4) for o in seen]).reshape(-1, 4)
        return [int(o.id) for o in seen], boxes

    return step, f"norfair {importlib.metadata.version('norfair')}"


def feedtag_bytetracker(nominal_fps: float, **settings: float) -> tuple[Step, str]:
    """feedtag's wrapper, fed the frame times."""
    from feedtag.core import Detections
    from feedtag.vision.tracker import ByteTracker

    tracker = ByteTracker(**settings)  # type: ignore[arg-type]

    def step(xyxy: FloatArray, confidence: FloatArray, t_s: float) -> tuple[list[int], FloatArray]:
        detections = Detections(
            xyxy.astype(np.float32),
            confidence.astype(np.float32),
            np.zeros(len(xyxy), np.int32),
        )
        ids = tracker.update(detections, t_s).tracker_id
        if ids is None:
            raise RuntimeError("feedtag's tracker returned no tracker_id")
        keep = ids > 0
        return ids[keep].tolist(), xyxy[keep]

    return step, f"trackers {importlib.metadata.version('trackers')}"


@dataclass(frozen=True)
class Candidate:
    label: str
    module: str  # what must import in the worker's interpreter
    make: Callable[[float], tuple[Step, str]]


CANDIDATES: dict[str, Candidate] = {
    "trackers": Candidate(
        "trackers ByteTrack, defaults, frame counts",
        "trackers",
        lambda fps: trackers_bytetrack(fps, timestamps=False),
    ),
    "trackers-time": Candidate(
        "trackers ByteTrack, defaults, timestamps",
        "trackers",
        lambda fps: trackers_bytetrack(fps, timestamps=True),
    ),
    "supervision-0.30": Candidate(
        "supervision 0.30 ByteTrack", "supervision", supervision_bytetrack
    ),
    "norfair": Candidate("norfair 2.3, IoU distance", "norfair", norfair_tracker),
    "feedtag": Candidate("feedtag ByteTracker", "feedtag.vision.tracker", feedtag_bytetracker),
    # the same without the time-scaled gate: what buffered IoU buys at low rates
    "feedtag-plain-iou": Candidate(
        "feedtag ByteTracker, plain IoU",
        "feedtag.vision.tracker",
        lambda fps: feedtag_bytetracker(fps, association_margin_per_s=0.0),
    ),
}


def run_worker(name: str, input_path: Path, output_path: Path) -> None:
    """Run one candidate over every run in ``input_path``; write ids, boxes and timings."""
    import warnings

    warnings.simplefilter("ignore")  # deprecation chatter of old versions, not our business
    job = json.loads(input_path.read_text())
    results: dict[str, Any] = {}
    version = ""
    for run in job["runs"]:
        frames = [
            (np.array(f["xyxy"], np.float64).reshape(-1, 4), np.array(f["confidence"]), f["t_s"])
            for f in run["frames"]
        ]
        totals: list[float] = []
        outputs: list[tuple[list[int], list[list[float]]]] = []
        for _ in range(job["repeats"]):
            step, version = CANDIDATES[name].make(run["nominal_fps"])
            outputs = []
            start = time.perf_counter()
            for xyxy, confidence, t_s in frames:
                ids, boxes = step(xyxy, confidence, t_s)
                outputs.append((ids, np.asarray(boxes, np.float64).reshape(-1, 4).tolist()))
            totals.append(time.perf_counter() - start)
        results[run["key"]] = {"outputs": outputs, "seconds": statistics.median(totals)}
    output_path.write_text(json.dumps({"version": version, "runs": results}))


# -- scoring -------------------------------------------------------------------------------


def load_motmetrics() -> ModuleType:
    """``motmetrics``, with the ``np.asfarray`` it still calls restored for this process."""
    if not hasattr(np, "asfarray"):
        np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)  # type: ignore[attr-defined]
    return importlib.import_module("motmetrics")


def score(
    runs: Sequence[Run], outputs: dict[str, list[tuple[list[int], list[list[float]]]]]
) -> dict[str, float]:
    """MOTA, IDF1 and identity switches over the runs together (motmetrics' OVERALL)."""
    mm = load_motmetrics()
    truths = {run.sequence: load_ground_truth(run.sequence) for run in runs}
    accumulators, names = [], []
    for run in runs:
        accumulator = mm.MOTAccumulator(auto_id=True)
        truth = truths[run.sequence]
        for frame, (ids, boxes) in zip(run.frame_numbers, outputs[run.key], strict=True):
            gt_ids, gt_xywh = truth.frames.get(frame, (np.zeros(0, np.int64), np.zeros((0, 4))))
            xywh = np.array(boxes, np.float64).reshape(-1, 4)
            xywh[:, 2:4] -= xywh[:, 0:2]
            distances = mm.distances.iou_matrix(gt_xywh, xywh, max_iou=0.5)
            accumulator.update(gt_ids.tolist(), ids, distances)
        accumulators.append(accumulator)
        names.append(run.key)
    summary = mm.metrics.create().compute_many(
        accumulators,
        metrics=["mota", "idf1", "num_switches", "num_frames"],
        names=names,
        generate_overall=True,
    )
    overall = summary.loc["OVERALL"]
    return {name: float(overall[name]) for name in ("mota", "idf1", "num_switches", "num_frames")}


# -- the driver ------------------------------------------------------------------------------


def make_venvs(root: Path) -> dict[str, str]:
    """Throwaway venvs for the candidates that conflict with feedtag's environment."""
    specs = {
        "supervision-0.30": ["supervision>=0.30,<0.31"],
        "norfair": ["norfair>=2.3,<3", "numpy<2"],
    }
    pythons = {}
    for name, requirements in specs.items():
        venv = root / name
        python = venv / "bin" / "python"
        if not python.exists():
            emit(f"creating {venv} with {' '.join(requirements)}")
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    *requirements,
                ],
                check=True,
                timeout=900,
            )
        pythons[name] = str(python)
    return pythons


def worker_env(name: str) -> dict[str, str]:
    """The environment of a worker: feedtag's own candidate imports from this checkout."""
    if not name.startswith("feedtag"):
        return dict(os.environ)
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}


def imports(name: str, python: str, module: str) -> bool:
    probe = [python, "-c", f"import {module}"]
    done = subprocess.run(
        probe, capture_output=True, timeout=120, check=False, env=worker_env(name)
    )
    return done.returncode == 0


def evaluate(name: str, python: str, runs: Sequence[Run], repeats: int) -> dict[str, Any]:
    """Feed ``runs`` to candidate ``name`` in a worker under ``python``; the raw results."""
    job = {
        "repeats": repeats,
        "runs": [
            {
                "key": run.key,
                "nominal_fps": run.nominal_fps,
                "frames": [
                    {"t_s": t, "xyxy": xyxy.tolist(), "confidence": confidence.tolist()}
                    for t, (xyxy, confidence) in zip(run.t_s, run.detections, strict=True)
                ],
            }
            for run in runs
        ],
    }
    with tempfile.TemporaryDirectory(prefix="tracker-eval-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job))
        command = [python, __file__, "--worker", name, str(job_path), str(result_path)]
        src = Path(__file__).resolve().parent.parent / "src"
        env_path = {"PYTHONPATH": str(src)} if name == "feedtag" else {}

        subprocess.run(command, check=True, timeout=1800, env={**os.environ, **env_path})
        result: dict[str, Any] = json.loads(result_path.read_text())
        return result


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown table lines of the results."""
    lines = [
        "| implementation | sequence | rate | frames | MOTA | IDF1 | ID sw. | ms/frame |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['label']} | {row['sequence']} | {row['rate']} | {row['frames']} "
            f"| {row['mota']:.3f} | {row['idf1']:.3f} | {row['switches']} | {row['ms']:.2f} |"
        )
    return lines


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """Per implementation: mean MOTA and IDF1 at 25 fps and at feedtag's rates (5 fps and
    below, jittered included); the best at feedtag's rates by IDF1, then MOTA."""
    summary = []
    for label in dict.fromkeys(row["label"] for row in rows):
        mine = [row for row in rows if row["label"] == label]
        full = [row for row in mine if row["rate"] == "25 fps"]
        low = [row for row in mine if row["rate"] != "25 fps"]
        summary.append(
            (
                statistics.fmean(row["idf1"] for row in low),
                statistics.fmean(row["mota"] for row in low),
                statistics.fmean(row["idf1"] for row in full),
                statistics.fmean(row["mota"] for row in full),
                statistics.fmean(row["ms"] for row in mine),
                label,
            )
        )
    summary.sort(reverse=True)
    lines = [
        "| implementation | MOTA 25 fps | IDF1 25 fps | MOTA <= 5 fps | IDF1 <= 5 fps | ms/frame |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for low_idf1, low_mota, idf1, mota, ms, label in summary:
        lines.append(
            f"| {label} | {mota:.3f} | {idf1:.3f} | {low_mota:.3f} | {low_idf1:.3f} | {ms:.2f} |"
        )
    if summary:
        lines += ["", f"verdict: best at feedtag's rates (5 fps and below): {summary[0][-1]}"]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--worker", nargs=3, metavar=("NAME", "JOB", "RESULT"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="interpreter for a candidate (e.g. norfair=/tmp/x/bin/python)",
    )
    parser.add_argument(
        "--make-venvs",
        type=Path,
        metavar="DIR",
        help="create throwaway venvs for supervision 0.30 and norfair in DIR",
    )
    parser.add_argument("--only", action="append", default=[], choices=sorted(CANDIDATES))
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per run (median)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.worker:
        name, job, result = args.worker
        run_worker(name, Path(job), Path(result))
        return 0

    pythons = {name: sys.executable for name in CANDIDATES}
    if args.make_venvs:
        pythons.update(make_venvs(args.make_venvs))
    for item in args.python:
        name, _, path = item.partition("=")
        pythons[name] = path
    runs = make_runs()
    rows: list[dict[str, Any]] = []
    for name in args.only or list(CANDIDATES):
        candidate = CANDIDATES[name]
        if not imports(name, pythons[name], candidate.module):
            emit(f"skipped {name}: {candidate.module} does not import under {pythons[name]}")
            continue
        result = evaluate(name, pythons[name], runs, args.repeats)
        emit(f"{name}: {result['version']}")
        groups: dict[tuple[str, str], list[Run]] = {}
        for run in runs:
            groups.setdefault((run.sequence, run.rate), []).append(run)
        for (sequence, rate), members in groups.items():
            outputs = {run.key: result["runs"][run.key]["outputs"] for run in members}
            metrics = score(members, outputs)
            frames = sum(len(run.frame_numbers) for run in members)
            seconds = sum(result["runs"][run.key]["seconds"] for run in members)
            rows.append(
                {
                    "name": name,
                    "label": f"{candidate.label} ({result['version']})",
                    "sequence": sequence,
                    "rate": rate,
                    "frames": frames,
                    "mota": metrics["mota"],
                    "idf1": metrics["idf1"],
                    "switches": int(metrics["num_switches"]),
                    "ms": 1000.0 * seconds / frames,
                }
            )
    emit()
    for line in table(rows):
        emit(line)
    emit()
    for line in verdict(rows):
        emit(line)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
