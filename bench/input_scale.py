# ruff: noqa: T201 - a command-line benchmark
"""What a smaller whole-frame input would save and lose, per footage: the question behind
choosing an input scale per camera (Chameleon-style profiling), answered on the sample
footage before any such chooser is built.

    PYTHONPATH=src python bench/input_scale.py [--footage vtest,bikes] [--every 5]
        [--scales 0.5,0.55,0.6]

Each analysed frame (every ``--every``-th decoded frame of the 640x360 16:9 cut) runs through
the default detector twice: whole at its configured input (416 long side: 416x256) and
whole at ``scale`` model pixels per frame pixel (``detect(images, scales=...)``, the path
active regions use; 0.5 is 320x192). An object of the 416 run is *found* when the scaled run
has a box of the same class overlapping it at IoU >= 0.5; *extra* counts scaled-run boxes
matched to nothing. Cost is process CPU per frame (the runtime's threads included, one
inference thread). A camera could only be switched to a smaller input where it finds nearly
all of what 416 finds; this prints how far each footage is from that.

It prints numbers; it is not a test. docs/performance.md has the figures of this machine.
"""

from __future__ import annotations

import argparse
import time

import av
import numpy as np

from feedtag.bench.footage import sample_h264
from feedtag.config.models import DetectorConfig
from feedtag.core import Detections
from feedtag.runtime.detection import build_detector
from feedtag.vision.decoders import pairwise_iou

MATCH_IOU = 0.5


def frames(footage: str, every: int) -> list[np.ndarray]:
    with av.open(str(sample_h264(footage, 640, 360))) as container:
        decoded = container.decode(video=0)
        return [f.to_ndarray(format="rgb24") for i, f in enumerate(decoded) if i % every == 0]


def matched(reference: Detections, candidate: Detections) -> int:
    """Objects of ``reference`` that ``candidate`` also has (same class, IoU >= 0.5), each
    candidate box used once, best overlaps first."""
    if not len(reference) or not len(candidate):
        return 0
    iou = pairwise_iou(reference.xyxy, candidate.xyxy)
    iou[reference.class_id[:, None] != candidate.class_id[None, :]] = 0.0
    found = 0
    for flat in np.argsort(iou, axis=None)[::-1]:
        r, c = np.unravel_index(flat, iou.shape)
        if iou[r, c] < MATCH_IOU:
            break
        found += 1
        iou[r, :] = 0.0
        iou[:, c] = 0.0
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--footage", default="vtest,bikes")
    parser.add_argument("--every", type=int, default=5, help="analyse every Nth frame")
    parser.add_argument("--scales", default="0.5,0.55,0.6")
    args = parser.parse_args()
    detector = build_detector(DetectorConfig())
    scales = [float(s) for s in args.scales.split(",")]
    print(f"{'footage':<8}{'frames':>7}{'scale':>7}{'objects':>8}{'found':>7}{'extra':>7}"
          f"{'ms 416':>8}{'ms scaled':>10}")  # fmt: skip
    for footage in args.footage.split(","):
        images = frames(footage, args.every)
        for scale in scales:
            objects = found = extra = 0
            whole_s = scaled_s = 0.0
            for image in images:
                start = time.process_time()
                whole = detector.detect([image])[0]
                middle = time.process_time()
                scaled = detector.detect([image], scales=[scale])[0]
                whole_s += middle - start
                scaled_s += time.process_time() - middle
                hit = matched(whole, scaled)
                objects += len(whole)
                found += hit
                extra += len(scaled) - hit
            share = found / objects if objects else float("nan")
            print(f"{footage:<8}{len(images):>7}{scale:>7.2f}{objects:>8}{share:>7.3f}"
                  f"{extra:>7}{1000 * whole_s / len(images):>8.2f}"
                  f"{1000 * scaled_s / len(images):>10.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
