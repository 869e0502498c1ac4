"""The media thread: jobs off the caller's thread, essential ones never dropped."""

from __future__ import annotations

import threading

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
