# The RTSP test server runs under Debian's system Python (it needs `gi`), never in the venv.
collect_ignore = ["src/feedtag/bench/rtsp_server.py"]
