"""The media thread: jobs off the caller's thread, essential ones never dropped."""

from __future__ import annotations

import threading
import time

from feedtag.runtime.media_worker import MediaWorker


def test_jobs_run_on_the_media_thread_in_order() -> None:
    worker = MediaWorker()
    seen: list[tuple[int, str]] = []
    for number in range(20):
        worker.submit(
            lambda n=number: seen.append((n, threading.current_thread().name)), essential=True
        )
    assert worker.close()
    assert [n for n, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"media"}
    assert (worker.done, worker.inline, worker.skipped) == (20, 0, 0)


def test_when_full_essential_jobs_run_inline_and_others_are_skipped() -> None:
    worker = MediaWorker(queue_size=2)
    release = threading.Event()
    worker.submit(lambda: release.wait(10), essential=True)  # blocks the media thread
    ran: list[str] = []
    for name in ("a", "b", "c", "d"):
        worker.submit(lambda name=name: ran.append(name), essential=True)
    worker.submit(lambda: ran.append("thumbnail"), essential=False)
    assert worker.inline >= 1 and worker.skipped == 1
    assert "thumbnail" not in ran  # skipped, not run
    release.set()
    assert worker.close()
    assert sorted(ran) == ["a", "b", "c", "d"]  # every essential job ran, none lost


def test_a_failing_job_does_not_stop_the_worker() -> None:
    worker = MediaWorker()
    done: list[int] = []
    worker.submit(lambda: 1 / 0, essential=True)  # type: ignore[func-returns-value]
    worker.submit(lambda: done.append(1), essential=True)
    assert worker.close()
    assert done == [1]


def test_after_close_essential_jobs_still_run() -> None:
    worker = MediaWorker()
    assert worker.close()
    done: list[int] = []
    worker.submit(lambda: done.append(1), essential=True)
    assert done == [1]


def test_a_closing_worker_hurries_after_its_careful_time() -> None:
    """Jobs queued at close run as usual for ``careful_s``, then see ``hurrying()`` and take
    their cheap path, so closing with a long queue of slow jobs stays bounded."""
    worker = MediaWorker()
    careful: list[int] = []
    hurried: list[int] = []

    def job(number: int) -> None:
        if worker.hurrying():
            hurried.append(number)
        else:
            careful.append(number)
            time.sleep(0.1)  # a person check

    assert not worker.hurrying()
    for number in range(40):  # 4 s of careful work
        worker.submit(lambda n=number: job(n), essential=True)
    started = time.monotonic()
    assert worker.close(careful_s=0.35)
    took = time.monotonic() - started
    assert took < 1.0
    assert 2 <= len(careful) <= 6 and careful == list(range(len(careful)))
    assert hurried == list(range(len(careful), 40))  # every job still ran, in order
