"""A config file is untrusted input: size, nesting and alias expansion are bounded, and every
way of failing to read it is a :class:`ConfigError` (exit 2), never a traceback.

The incident: ``feedtag check`` on ``cameras: `` followed by 2,000 ``[`` ended in a
RecursionError traceback from PyYAML's recursive composer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from feedtag.config import load_config, parse_config
from feedtag.config.loading import MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, MAX_CONFIG_NODES
from feedtag.errors import ConfigError


def nested(opening: str, closing: str, levels: int) -> str:
    return "cameras: " + opening * levels + "1" + closing * levels + "\n"


def laughs(levels: int) -> str:
    """The billion laughs: each level's anchor is a list of ten aliases of the one before."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*l{level - 1}"] * 10)
        lines.append(f"l{level}: &l{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def chained_deep_aliases(links: int) -> str:
    """Each anchor nests 40 levels and ends in an alias of the one before: shallow as text,
    ``40 * links`` levels deep once the aliases are followed."""
    lines = ["a0: &a0 " + "[" * 40 + "x" + "]" * 40]
    for link in range(1, links):
        lines.append(f"a{link}: &a{link} " + "[" * 40 + f"*a{link - 1}" + "]" * 40)
    return "\n".join(lines) + "\n"


DEEP = MAX_CONFIG_DEPTH + 10
DEPTH_MESSAGE = f"config nests deeper than {MAX_CONFIG_DEPTH} levels (line 1)"
NODES_MESSAGE = f"config has more than {MAX_CONFIG_NODES} values"

REFUSED = [
    # (name, text, the message of the one problem)
    ("nested flow lists", nested("[", "]", DEEP), DEPTH_MESSAGE),
    ("nested flow mappings", nested("{a: ", "}", DEEP), DEPTH_MESSAGE),
    ("2,000 unclosed [", "cameras: " + "[" * 2000, DEPTH_MESSAGE),
    ("nested block lists",
     "cameras:\n" + "".join("  " * i + "-\n" for i in range(DEEP)), "config nests deeper than"),
    ("aliases nesting deep", chained_deep_aliases(3), "config nests deeper than"),
    ("billion laughs", laughs(9), NODES_MESSAGE),
    ("too long", "cameras: []\n" + "#" * MAX_CONFIG_BYTES, f"larger than {MAX_CONFIG_BYTES}"),
    ("impossible date", "cameras: [{id: a, url: rtsp://c/x, name: 2001-13-01}]",
     "a value cannot be read (month must be in 1..12)"),
    ("5,000-digit integer", "engine: {queue_size: " + "9" * 5000 + "}",
     "a value cannot be read (Exceeds the limit (4300 digits)"),
    ("a list as a key", "? [1]\n: 2\n", "a key must be a plain value"),
    ("recursive alias", "cameras: &a [*a]", "recursive"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), [case[1:] for case in REFUSED],
                         ids=[case[0] for case in REFUSED])  # fmt: skip
def test_limits_and_broken_yaml_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ={})
    [(path, problem)] = info.value.problems
    assert path == "" and message in problem


ACCEPTED = [
    ("nested to the limit", nested("[", "]", MAX_CONFIG_DEPTH - 2)),  # the mapping and key
    ("a few laughs", laughs(4)),  # 11,110 values
    ("shared settings by alias",
     "x: &gate {pixel_threshold: 20}\ncameras: [{id: a, url: rtsp://c/x, gate: *gate}]"),
]  # fmt: skip


@pytest.mark.parametrize("text", [case[1] for case in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_within_the_limits_only_the_fields_are_judged(text: str) -> None:
    """Nothing here passes a limit: what is wrong is an unknown key, reported as usual."""
    try:
        parse_config(text, environ={})
    except ConfigError as exc:
        assert all(
            "Extra inputs" in problem or "Input should be" in problem for _, problem in exc.problems
        ), exc.problems


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes(b"cameras: []\n# caf\xe9\n")
    (tmp_path / "big.yaml").write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    (tmp_path / "folder.yaml").mkdir()
    os.mkfifo(tmp_path / "fifo.yaml")  # no writer: opening it blocking would hang
    cases = {
        "latin1.yaml": "file is not UTF-8 text (byte 18)",
        "big.yaml": f"config is larger than {MAX_CONFIG_BYTES} bytes",
        "folder.yaml": "cannot read file: Is a directory",
        "fifo.yaml": "cannot read file: not a regular file",
        "missing.yaml": "cannot read file: No such file or directory",
    }
    for name, message in cases.items():
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path / name)
        assert info.value.problems == [("", message)], name


@pytest.mark.parametrize("command", ["check", "run"])
def test_the_cli_exits_2_without_a_traceback(tmp_path: Path, command: str) -> None:
    config = tmp_path / "deep.yaml"
    config.write_text("cameras: " + "[" * 2000)
    done = subprocess.run(
        [sys.executable, "-m", "feedtag.cli", command, str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert DEPTH_MESSAGE in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
