"""Which shard runs which camera: capacity-weighted rendezvous (highest random weight) hashing.

Every (camera, shard) pair gets a score from a stable hash; a camera goes to the shard with
the highest score. Weighting follows the logarithmic method (score = -weight / ln(h), with
``h`` the hash mapped into (0, 1)), so a shard's share of cameras is its share of the total
weight, and:

- when a shard leaves, only its own cameras move (every other camera's best shard is
  unchanged);
- when a shard joins, only the cameras it now wins move to it: about its weighted share.

Pure functions, no Ray: the coordinator (:mod:`feedtag.runtime.ray_coordinator`) calls them.

>>> shards = {"a": 1.0, "b": 1.0}
>>> plan = assign(["door", "yard", "gate"], shards)
>>> sorted(plan) == ["door", "gate", "yard"] and set(plan.values()) <= {"a", "b"}
True
>>> after = assign(["door", "yard", "gate"], {"a": 1.0})
>>> [move.camera_id for move in moves(plan, after)] == sorted(c for c in plan if plan[c] == "b")
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

#: 2**64, to map a 64-bit hash into (0, 1)
_SPAN: Final = float(2**64)


def _unit(camera_id: str, shard_id: str) -> float:
    """A stable pseudo-random number in (0, 1) for the pair (the same on every machine and
    in every process: Python's ``hash`` is salted per process, so it cannot be used)."""
    digest = hashlib.blake2b(f"{camera_id}\x00{shard_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SPAN


def score(camera_id: str, shard_id: str, weight: float) -> float:
    """The pair's rendezvous score; higher wins."""
    return -weight / math.log(_unit(camera_id, shard_id))


def owner(camera_id: str, shards: Mapping[str, float]) -> str:
    """The shard that runs ``camera_id`` (ties broken by shard id, for determinism).
    Raises :class:`ValueError` when there is no shard with a positive weight."""
    live = [(shard, weight) for shard, weight in shards.items() if weight > 0]
    if not live:
        raise ValueError("no shard with a positive capacity to assign cameras to")
    return max(live, key=lambda pair: (score(camera_id, pair[0], pair[1]), pair[0]))[0]


def assign(camera_ids: Iterable[str], shards: Mapping[str, float]) -> dict[str, str]:
    """Camera id → shard id for every camera, over ``shards`` (shard id → capacity)."""
    return {camera_id: owner(camera_id, shards) for camera_id in camera_ids}


@dataclass(frozen=True, slots=True)
class Move:
    """One camera changing hands: from None is a new camera, to None a removed one."""

    camera_id: str
    source: str | None
    target: str | None


def moves(before: Mapping[str, str], after: Mapping[str, str]) -> list[Move]:
    """Every camera whose shard differs between two assignments, by camera id."""
    changed = []
    for camera_id in sorted(before.keys() | after.keys()):
        source, target = before.get(camera_id), after.get(camera_id)
        if source != target:
            changed.append(Move(camera_id, source, target))
    return changed
