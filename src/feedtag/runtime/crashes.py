"""Which cameras crash their shards: the crash budget of the Ray engine's coordinator.

When a shard process crashes, the cameras started on it shortly before are the suspects
(the coordinator knows which; this module does not know about shards). Each suspect gets a
strike; a camera with :data:`CRASH_BUDGET` strikes within :data:`CRASH_WINDOW_S` is put
offline with the reason, instead of moving from shard to shard for ever.

Cameras started together on one shard share the strikes of its crashes, so when several
spend the budget in the same crash, none is blamed yet: they are held back and tried one at
a time, each for :data:`TRIAL_S`, as the only suspect of its shard. The one whose shard
crashes on its trial goes offline; one that runs its trial through is cleared.

>>> now = [0.0]
>>> budget = CrashBudget(clock=lambda: now[0])
>>> for _ in range(3):
...     budget.crashed(["crasher", "mate"])
>>> budget.held, budget.offline
(['crasher', 'mate'], {})
>>> budget.next_trial({"crasher", "mate"}); budget.trial
'crasher'
>>> budget.crashed(["crasher", "mate"])  # on its trial: only the crasher is a suspect
>>> sorted(budget.offline), budget.trial
(['crasher'], None)
>>> budget.next_trial({"crasher", "mate"}); now[0] += TRIAL_S
>>> budget.next_trial({"crasher", "mate"}); budget.held, budget.trial
([], None)
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import Final

log = logging.getLogger(__name__)

#: strikes within :data:`CRASH_WINDOW_S` that put a camera offline
CRASH_BUDGET: Final = 3
CRASH_WINDOW_S: Final = 600.0
#: how long a camera held back with others runs on trial, as the only suspect of its shard
TRIAL_S: Final = 30.0


class CrashBudget:
    """Strikes per camera, the cameras held back for a trial, and the cameras put offline
    (camera id -> reason). Not thread-safe: the coordinator calls it under its lock."""

    def __init__(
        self,
        *,
        trial_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``trial_s``: default :data:`TRIAL_S`, read when the budget is made."""
        self.trial_s = TRIAL_S if trial_s is None else trial_s
        self._clock = clock
        self._strikes: dict[str, deque[float]] = {}
        self.offline: dict[str, str] = {}
        #: cameras that spent the budget together, waiting for their trial, in order
        self.held: list[str] = []
        self._trial: tuple[str, float] | None = None

    @property
    def trial(self) -> str | None:
        """The camera on trial."""
        return None if self._trial is None else self._trial[0]

    def kept_out(self) -> set[str]:
        """Cameras not to run: offline, or held back and not on trial."""
        return {*self.offline, *self.held}

    def crashed(self, suspects: Sequence[str]) -> None:
        """A shard crashed, ``suspects`` (its cameras started shortly before) with it."""
        suspects = [c for c in suspects if c not in self.offline]
        if self.trial is not None and self.trial in suspects:
            suspects, self._trial = [self.trial], None  # the trial was for this
        now = self._clock()
        spent = [c for c in suspects if self._strike(c, now) >= CRASH_BUDGET]
        if len(spent) == 1:
            reason = (
                f"its shard crashed {len(self._strikes[spent[0]])} times within "
                f"{CRASH_WINDOW_S:.0f} s of starting it; change or restart it to retry"
            )
            self.offline[spent[0]] = reason
            log.error("camera %s put offline: %s", spent[0], reason)
        elif spent:
            self.held += [c for c in sorted(spent) if c not in self.held]
            log.warning(
                "cameras %s crashed their shard together %d times: held back, tried one at "
                "a time", ", ".join(sorted(spent)), CRASH_BUDGET,
            )  # fmt: skip

    def next_trial(self, wanted: Collection[str]) -> None:
        """Clear the camera on trial once it ran :attr:`trial_s` without a crash, and put
        the next held camera on trial; cameras no longer ``wanted`` are forgotten."""
        now = self._clock()
        self.held = [c for c in self.held if c in wanted]
        if self._trial is not None:
            camera_id, since = self._trial
            if camera_id in wanted and now - since < self.trial_s:
                return
            self._strikes.pop(camera_id, None)
            self._trial = None
            log.info("camera %s ran its trial without a crash of its shard", camera_id)
        if self.held:
            self._trial = (self.held.pop(0), now)

    def clear(self, camera_id: str) -> None:
        """Another chance for ``camera_id`` (it was changed or restarted)."""
        self.offline.pop(camera_id, None)
        self._strikes.pop(camera_id, None)
        if camera_id in self.held:
            self.held.remove(camera_id)
        if self.trial == camera_id:
            self._trial = None

    def _strike(self, camera_id: str, now: float) -> int:
        strikes = self._strikes.setdefault(camera_id, deque())
        strikes.append(now)
        while strikes and now - strikes[0] > CRASH_WINDOW_S:
            strikes.popleft()
        return len(strikes)
