"""The looping RTSP server that ``feedtag demo`` and the tests start: Ctrl-C in the terminal
does not reach it (the demo stops its cameras first, then the server), and it does not
outlive the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ..conftest import require_service, rtsp_server_available, wait_for

#: a process that starts the server, says its pid, ignores SIGINT (as the demo's shutdown
#: would run meanwhile) and waits
STARTER = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    from feedtag.bench.demo import LoopingRtspServer
    server = LoopingRtspServer({"vtest": Path(sys.argv[1])})
    server.start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(server.process.pid, flush=True)
    time.sleep(120)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return status != "Z"


def test_ctrl_c_does_not_reach_the_server_and_it_ends_with_its_starter(vtest_clip: Path) -> None:
    require_service(rtsp_server_available(), "GStreamer RTSP server not installed")
    # the starter leads a process group, as a command typed in a terminal does
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(vtest_clip)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    server_pid = 0
    try:
        assert starter.stdout is not None
        server_pid = int(starter.stdout.readline())
        os.killpg(starter.pid, signal.SIGINT)  # what Ctrl-C does to the foreground group
        time.sleep(1.5)
        assert _alive(server_pid), "Ctrl-C to the starter's group stopped the server"
        starter.kill()  # the starter ends without stopping the server
        starter.wait(10)
        wait_for(lambda: not _alive(server_pid), 10, 0.1, "the server ends with its starter")
    finally:
        if starter.poll() is None:
            starter.kill()
        if server_pid and _alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)
        starter.wait(10)
        if starter.stdout is not None:
            starter.stdout.close()
