"""``feedtag bench compare``: feedtag beside an NVR-style peer and the decode+inference limit.

For each workload, on the same footage, three child processes run in turn, each measured as
CPU per feed-second over the same window (as ``feedtag bench ingest`` does):

- **feedtag**: the whole path, ``NodeEngine`` with the change gate, the default detector
  (416, on the runtime ``detector.backend: auto`` picks), the tracker, presence rules for the
  whole frame and a 3x3 grid, and the store (SQLite in a temporary folder);
- **peer**: :class:`~feedtag.bench.peer.PeerRun`, decode every frame, detect one a second at
  320 with the same default model, batch 1, no gate;
- **limit**: :class:`~feedtag.bench.peer.LimitRun`, keyframe decode plus the bare session
  run at feedtag's input shape.

Workloads, all at 1 analysed frame per second: **W1** 640x360 vtest, **W2** 1280x720 vtest,
and the **fleet**, 16 feeds at 640x360: 4 busy (vtest), 4 bikes and 8 quiet feeds
(:func:`~feedtag.bench.footage.quiet_h264`). Each variant's feeds-per-core figure is given
only when it kept up (:mod:`feedtag.bench.capacity`). Presence recall is the
``feedtag bench presence`` method (default variant against ungated 25 fps 416 FP32) on the
workload's footage; for the fleet, over its busy feeds. With the adaptive rate on, the
measured window starts once a quiet feed has had time to settle at its floor rate
(:meth:`Savings.warmup_s`), for every variant alike.

A CPU's speed drifts between runs (10-20% within minutes on a shared VM), which moves a ratio
of two runs as much. ``--rounds N`` measures each workload N times, the three variants one
after another in each round, and reports each variant's median round (its figure, cost and
memory; saturated if any round was) with every round's figure beside it
(``feedtag_rounds``, ``peer_rounds``, ``limit_rounds``).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from feedtag.bench import presence
from feedtag.bench.footage import quiet_h264, sample_h264
from feedtag.bench.ingest import CHILD_TIMEOUT_MARGIN_S, WARMUP_S, EngineRun, Runner, measure
from feedtag.bench.peer import PEER_INPUT_SIZE, LimitRun, PeerRun
from feedtag.config.adaptive import AdaptiveRateConfig
from feedtag.config.models import DetectorConfig
from feedtag.runtime.detection import build_detector, default_model_info, resolve_runtime

Kind = Literal["feedtag", "peer", "limit"]
KINDS: Final[tuple[Kind, ...]] = ("feedtag", "peer", "limit")
WORKLOADS: Final = ("W1", "W2", "fleet")
#: seconds of footage the presence recall is measured on (full run, --quick)
PRESENCE_SECONDS: Final = 30
QUICK_PRESENCE_SECONDS: Final = 4
#: seconds of the quiet feed's loop
QUIET_SECONDS: Final = 60


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    width: int
    height: int
    #: (sample name, feeds) pairs; "quiet" is the still-frame feed
    mix: tuple[tuple[str, int], ...]
    #: samples whose presence recall is measured
    busy: tuple[str, ...]

    @property
    def feeds(self) -> int:
        return sum(count for _, count in self.mix)


def workload(name: str, quick: bool) -> Workload:
    """A workload at full size, or a few feeds of it for ``quick``."""
    scale = 4 if quick else 1
    if name == "W1":
        return Workload("W1", 640, 360, (("vtest", 16 // scale),), ("vtest",))
    if name == "W2":
        return Workload("W2", 1280, 720, (("vtest", 8 // scale),), ("vtest",))
    if name == "fleet":
        mix = (("vtest", 4 // scale), ("bikes", 4 // scale), ("quiet", 8 // scale))
        return Workload("fleet", 640, 360, mix, ("vtest", "bikes"))
    raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")


def sources(load: Workload, quick: bool) -> list[Path]:
    """The footage of every feed of ``load``, encoded once and cached."""
    paths = []
    for name, count in load.mix:
        if name == "quiet":
            seconds = 10.0 if quick else QUIET_SECONDS
            path = quiet_h264(load.width, load.height, seconds=seconds)
        else:
            path = sample_h264(name, load.width, load.height)
        paths += [path] * count
    return paths


def presence_analytics() -> dict[str, Any]:
    """Presence rules for the whole frame and each grid cell, as ``bench presence`` scores."""
    rules: list[dict[str, Any]] = [{"kind": "presence", "labels": list(presence.LABELS)}]
    rules += [
        {"kind": "presence", "labels": list(presence.LABELS), "zone": zone["name"]}
        for zone in presence.grid_zones()
    ]
    return {"zones": presence.grid_zones(), "rules": rules}


@dataclass(frozen=True, slots=True)
class Savings:
    """Which of feedtag's ways to skip inference the feedtag variant runs with, as
    ``feedtag run`` does by default: the adaptive analysis rate, and active regions where the
    runtime makes them pay (``gate.regions.enabled: auto``; ``regions=False`` turns them off
    everywhere)."""

    adaptive: bool = True
    regions: bool = True

    @property
    def regions_setting(self) -> bool | Literal["auto"]:
        """``gate.regions.enabled`` for the feedtag variant."""
        return "auto" if self.regions else False

    def argv(self) -> list[str]:
        return [*([] if self.adaptive else ["--fixed-rate"]),
                *([] if self.regions else ["--whole-frames"])]  # fmt: skip

    def warmup_s(self, quick: bool) -> float:
        """Seconds before the measured window: with the adaptive rate on, long enough for a
        quiet feed to have settled at its floor rate (``adaptive.quiet_after_s`` after the
        start). A fleet runs for hours; its first seconds at the normal rate are start-up,
        not its cost per feed. ``quick``, a smoke run, keeps the short warm-up."""
        settle = AdaptiveRateConfig().quiet_after_s if self.adaptive and not quick else 0.0
        return WARMUP_S + settle

    def variant(self) -> presence.Variant:
        """The presence benchmark's variant with the same settings."""
        return presence.Variant(
            "416-default",
            precision="auto",
            backend="auto",
            adaptive=self.adaptive,
            regions=self.regions_setting,
        )


def build_runner(
    kind: Kind, paths: list[Path], data_dir: Path, savings: Savings = Savings()
) -> Runner:
    if kind == "feedtag":
        return EngineRun(
            paths,
            "keyframes",
            pipeline=True,
            analytics=presence_analytics(),
            extra={"store": {"data_dir": str(data_dir)}},
            adaptive=savings.adaptive,
            regions=savings.regions_setting,
        )
    if kind == "peer":
        peer_model = DetectorConfig(input_size=PEER_INPUT_SIZE, precision="int8")
        return PeerRun(paths, default_model_info(peer_model).path)
    feedtags = DetectorConfig()
    return LimitRun(paths, default_model_info(feedtags), resolve_runtime(feedtags).backend)


def run_child_kind(
    kind: Kind, name: str, seconds: float, quick: bool, savings: Savings = Savings()
) -> dict[str, Any]:
    """Measure one variant of one workload in this process (the child)."""
    load = workload(name, quick)
    with tempfile.TemporaryDirectory(prefix="feedtag-compare-") as data_dir:
        runner = build_runner(kind, sources(load, quick), Path(data_dir), savings)
        measured = measure(runner, load.feeds, seconds, savings.warmup_s(quick))
    return {
        **measured.capacity.to_dict(),
        "rss_mb_per_feed": measured.rss_mb_per_feed,
        "seconds": round(measured.wall_s, 2),
    }


def run_in_child(
    kind: Kind, name: str, seconds: float, quick: bool, savings: Savings = Savings()
) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "feedtag.bench.compare", "--child", kind, "--workloads", name,
        "--seconds", str(seconds), *(["--quick"] if quick else []),
        *savings.argv(),
    ]  # fmt: skip
    timeout = seconds + savings.warmup_s(quick) + CHILD_TIMEOUT_MARGIN_S
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as expired:
        said = expired.stderr or b""
        tail = (said.decode(errors="replace") if isinstance(said, bytes) else said)[-6000:]
        raise RuntimeError(
            f"bench compare child ({kind}, {name}) did not finish in {timeout:.0f} s: {tail}"
        ) from None
    if done.returncode != 0:
        raise RuntimeError(f"bench compare child ({kind}, {name}) failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class PresenceRecall:
    """Recall of the cheap path on a workload's busy footage, pooled over its clips, with
    the feedtag variant's settings (``variant``); each clip is scored once (W1 and the fleet
    share vtest at 640x360)."""

    def __init__(self, quick: bool, variant: presence.Variant) -> None:
        self.variant = variant
        self.seconds = QUICK_PRESENCE_SECONDS if quick else PRESENCE_SECONDS
        self.reference = build_detector(
            DetectorConfig(input_size=416, precision="fp32", backend="onnxruntime")
        )
        self.detector = build_detector(DetectorConfig())
        self._scored: dict[Path, tuple[int, int]] = {}

    def __call__(self, load: Workload) -> float:
        hits = present = 0
        for name in load.busy:
            clip_hits, clip_present = self._score(
                sample_h264(name, load.width, load.height, seconds=self.seconds)
            )
            hits, present = hits + clip_hits, present + clip_present
        return round(hits / present, 3) if present else 1.0

    def _score(self, path: Path) -> tuple[int, int]:
        if path not in self._scored:
            present = presence.reference_presence(path, self.reference)
            tagged = presence.variant_presence(path, self.detector, self.variant).tagged
            self._scored[path] = (len(present & tagged), len(present))
        return self._scored[path]


def compare(
    names: Sequence[str],
    seconds: float,
    quick: bool,
    say: Callable[[str], None],
    savings: Savings = Savings(),
    *,
    repeat: int = 1,
) -> list[dict[str, Any]]:
    """One row per workload: each variant measured in its own child (``repeat`` rounds, the
    median round of each reported), and presence recall."""
    recall = PresenceRecall(quick, savings.variant())
    rows = []
    for name in names:
        load = workload(name, quick)
        rounds: dict[Kind, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        for done in range(repeat):
            for kind in KINDS:
                of = f", round {done + 1} of {repeat}" if repeat > 1 else ""
                say(f"{name}: {kind}, {load.feeds} feeds, {seconds:g} s{of} ...")
                rounds[kind].append(run_in_child(kind, name, seconds, quick, savings))
        runs = {kind: median_run(measured) for kind, measured in rounds.items()}
        say(f"{name}: presence recall ...")
        ours = runs["feedtag"]
        rows.append(
            {
                "workload": name,
                "feeds": load.feeds,
                "size": f"{load.width}x{load.height}",
                "feedtag_feeds_per_core": ours["feeds_per_core"],
                "peer_feeds_per_core": runs["peer"]["feeds_per_core"],
                "limit_feeds_per_core": runs["limit"]["feeds_per_core"],
                "presence_recall": recall(load),
                "rss_mb_per_feed": ours["rss_mb_per_feed"],
                **{key: ours[key] for key in SATURATION_FIELDS},
                "peer": runs["peer"],
                "limit": runs["limit"],
                "rounds": repeat,
                **{f"{kind}_rounds": [r["feeds_per_core"] for r in rounds[kind]] for kind in KINDS},
            }
        )
    return rows


def median_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run whose feeds per core is the median (the lower middle of an even count), or
    the first saturated run when any is: a variant keeps up only if it did every time.

    >>> median_run([{"feeds_per_core": 9.0}, {"feeds_per_core": 7.0}, {"feeds_per_core": 8.0}])
    {'feeds_per_core': 8.0}
    >>> median_run([{"feeds_per_core": 9.0}, {"feeds_per_core": None}])
    {'feeds_per_core': None}
    """
    saturated = [run for run in runs if run["feeds_per_core"] is None]
    if saturated:
        return saturated[0]
    ordered = sorted(runs, key=lambda run: float(run["feeds_per_core"]))
    return ordered[(len(ordered) - 1) // 2]


SATURATION_FIELDS: Final = (
    "saturated", "cpu_s_per_feed_s", "due_fps", "detected_fps", "dropped_fps",
    "handled_fraction", "p99_latency_s",
)  # fmt: skip


def _print_table(rows: list[dict[str, Any]]) -> None:
    def cell(value: Any) -> str:
        return "saturated" if value is None else f"{value}"

    print(f"{'workload':<10}{'feeds':>6}{'feedtag':>11}{'peer':>11}{'limit':>11}"  # noqa: T201
          f"{'recall':>8}{'p99 s':>7}{'MB/feed':>9}")  # fmt: skip
    for row in rows:
        print(  # noqa: T201
            f"{row['workload']:<10}{row['feeds']:>6}{cell(row['feedtag_feeds_per_core']):>11}"
            f"{cell(row['peer_feeds_per_core']):>11}{cell(row['limit_feeds_per_core']):>11}"
            f"{row['presence_recall']:>8}{cell(row['p99_latency_s']):>7}"
            f"{row['rss_mb_per_feed']:>9}"
        )
        if row["rounds"] > 1:
            each = "; ".join(
                f"{kind} {', '.join(cell(f) for f in row[f'{kind}_rounds'])}" for kind in KINDS
            )
            print(f"{'':<10}rounds: {each}")  # noqa: T201
    print("(feeds per core, each variant's median round; 'saturated': a run did not keep up, "  # noqa: T201
          "so no figure)")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="feedtag bench compare")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--fixed-rate", action="store_true", help="adaptive analysis rate off")
    parser.add_argument(
        "--whole-frames",
        action="store_true",
        help="active regions off (by default as feedtag run: on where the runtime makes them pay)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each workload this many times, the variants in turn, and report the "
        "median round (CPU speed drifts between runs)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=KINDS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds: expected a number > 0, got {args.rounds}")
    names = args.workloads.split(",")
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    savings = Savings(adaptive=not args.fixed_rate, regions=not args.whole_frames)
    if args.child is not None:
        # A child that stalls writes every thread's stack to stderr shortly before the parent
        # gives up on it, so that its error says where it stood.
        warmup = savings.warmup_s(args.quick)
        faulthandler.dump_traceback_later(args.seconds + warmup + CHILD_TIMEOUT_MARGIN_S / 2)
        result = run_child_kind(args.child, names[0], args.seconds, args.quick, savings)
        faulthandler.cancel_dump_traceback_later()
        print(json.dumps(result))  # noqa: T201 - the child's output channel
        return 0

    def say(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)  # noqa: T201

    rows = compare(names, args.seconds, args.quick, say, savings, repeat=args.rounds)
    if args.json:
        for row in rows:
            print(json.dumps(row))  # noqa: T201
    else:
        _print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
