from __future__ import annotations

import json
from pathlib import Path

import pytest

from feedtag.config import load_config, parse_config
from feedtag.config.loading import field_path
from feedtag.errors import ConfigError

GOOD = """
media_root: {root}
engine: {{queue_size: 3}}
cameras:
  - id: gate-1
    url: rtsp://admin:${{FEEDTAG_CAM_PASSWORD}}@10.0.0.5/Streaming/101
    analysis_fps: 2
  - id: lobby
    url: clip.mp4
    loop: true
"""


def problems_of(text: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ=environ or {})
    return dict(info.value.problems)


def test_good_config_loads(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"")
    config = parse_config(GOOD.format(root=tmp_path), environ={"FEEDTAG_CAM_PASSWORD": "s3cr"})
    gate, lobby = config.cameras
    assert gate.url.password is not None and gate.url.password.get_secret_value() == "s3cr"
    assert gate.analysis_fps == 2 and config.engine.queue_size == 3
    assert lobby.url.is_file and lobby.loop
    assert "s3cr" not in config.model_dump_json()


@pytest.mark.parametrize(
    ("yaml_text", "path", "message"),
    [
        ("cameras: [{id: a, url: 'concat:x|y'}]", "cameras[0].url", "scheme 'concat'"),
        ("cameras: [{id: a, url: 'x', bogus: 1}]", "cameras[0].bogus", "Extra inputs"),
        ("cameras: [{id: a, url: rtsp://c/x, analysis_fps: 0}]", "cameras[0].analysis_fps", "greater than 0"),
        ("cameras: [{id: a, url: rtsp://c/x, analysis_fps: 100}]", "cameras[0].analysis_fps", "less than or equal to 30"),
        ("cameras: [{id: 'a b', url: rtsp://c/x}]", "cameras[0].id", "pattern"),
        ("cameras: [{id: a}]", "cameras[0].url", "required"),
        ("cameras: [{id: a, url: rtsp://c/x, adaptive: {floor_fps: 0}}]",
         "cameras[0].adaptive.floor_fps", "greater than 0"),
        ("cameras: [{id: a, url: rtsp://c/x, adaptive: {tracking_fps: 31}}]",
         "cameras[0].adaptive.tracking_fps", "less than or equal to 30"),
        ("cameras: [{id: a, url: rtsp://c/x, adaptive: {quiet_after_s: 0}}]",
         "cameras[0].adaptive.quiet_after_s", "greater than 0"),
        ("cameras: [{id: a, url: rtsp://c/x, adaptive: {floor: 1}}]",
         "cameras[0].adaptive.floor", "Extra inputs"),
        ("cameras: [{id: a, url: rtsp://c/x, analysis_fps: 1, adaptive: {floor_fps: 2}}]",
         "cameras[0]", "adaptive.floor_fps (2) must be at most analysis_fps (1)"),
        ("cameras: [{id: a, url: rtsp://c/x, analysis_fps: 4, adaptive: {tracking_fps: 2}}]",
         "cameras[0]", "adaptive.tracking_fps (2) must be at least analysis_fps (4)"),
        ("cameras: [{id: a, url: rtsp://c/x, rtsp_transport: http}]", "cameras[0].rtsp_transport",
         "'tcp' or 'udp'"),
        ("cameras: [{id: a, url: rtsp://c/x, loop: true}]", "cameras[0]", "local files only"),
        ("cameras: [{id: a, url: rtsp://c/x, origin: 1}]", "cameras[0]",
         "origin applies to local files that do not loop only"),
        ("cameras: [{id: a, url: rtsp://c/x, origin: -1}]", "cameras[0].origin",
         "greater than or equal to 0"),
        ("cameras: [{id: a, url: /etc/passwd}]", "cameras[0].url", "media_root"),
        ("engine: {queue_size: 0}", "engine.queue_size", "greater than or equal to 1"),
        ("reconnect: {initial_backoff_s: 5, max_backoff_s: 1}", "reconnect", "max_backoff_s"),
        ("frobnicate: true", "frobnicate", "Extra inputs"),
        ("cameras: [{id: a, url: rtsp://c/x}, {id: a, url: rtsp://d/y}]", "", "cameras[1].id"),
        ("cameras: [{id: a, url: '${HOME}'}]", "cameras[0].url", "FEEDTAG_*"),
        ("cameras: [{id: a, url: '${FEEDTAG_MISSING}'}]", "cameras[0].url", "not set"),
    ],
)  # fmt: skip
def test_bad_configs_name_the_field(yaml_text: str, path: str, message: str) -> None:
    problems = problems_of(yaml_text)
    assert path in problems, problems
    assert message in problems[path]


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(
        "cameras:\n  - {id: a, url: 'pipe:0'}\n  - {id: b, url: 'rtsp://c/x', nope: 1}\n"
        "  - {id: c, url: '${NOT_OURS}'}\n"
    )
    assert {"cameras[0].url", "cameras[1].nope", "cameras[2].url"} <= set(problems)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cameras: [", "not valid YAML"),
        ("- 1\n- 2", "top level must be a mapping"),
        ("a: 1\na: 2", "duplicate key 'a'"),
        ("x: !!python/object/apply:os.system ['echo pwned']", "not valid YAML"),
    ],
)
def test_unsafe_or_broken_yaml(text: str, message: str) -> None:
    assert message in problems_of(text)[""]


def test_substitution_cannot_inject_structure() -> None:
    injected = "x\ncameras: [{id: evil, url: 'pipe:0'}]"
    config = parse_config(
        "cameras: [{id: a, name: '${FEEDTAG_NAME}', url: rtsp://c/x}]",
        environ={"FEEDTAG_NAME": injected},
    )
    assert len(config.cameras) == 1 and config.cameras[0].name == injected


def test_substitution_fallback_and_escape() -> None:
    config = parse_config(
        "cameras: [{id: a, name: '${FEEDTAG_N:-lobby} $${FEEDTAG_N}', url: rtsp://c/x}]",
        environ={},
    )
    assert config.cameras[0].name == "lobby ${FEEDTAG_N}"


def test_password_never_in_error_messages() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            "cameras: [{id: a, url: 'rtsp://u:hunter2@bad host/x'}, {id: b, url: 'gopher://u:hunter2@h/'}]"
        )
    assert "hunter2" not in str(info.value)


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "nope.yaml")


def test_field_path() -> None:
    assert field_path(("cameras", 2, "url")) == "cameras[2].url"
    assert field_path(()) == ""


def test_schema_is_json_and_strict() -> None:
    from feedtag.config import config_json_schema

    schema = json.loads(config_json_schema())
    camera = schema["$defs"]["CameraConfig"]
    assert camera["additionalProperties"] is False
    for name, prop in camera["properties"].items():
        assert prop.get("description"), f"cameras[].{name} has no description"


HOSTILE_CONFIGS = [
    "cameras: [{id: a, url: 'concat:/etc/passwd|/etc/shadow'}]",
    "cameras: [{id: a, url: 'subfile:,,start,0,end,0,,:/etc/passwd'}]",
    "cameras: [{id: a, url: 'pipe:0'}]",
    "cameras: [{id: a, url: 'data:text/plain,hello'}]",
    "cameras: [{id: a, url: '-i /etc/passwd'}]",
    "media_root: /tmp\ncameras: [{id: a, url: '../etc/passwd'}]",
    "media_root: /tmp\ncameras: [{id: a, url: 'file:///etc/passwd'}]",
    "cameras: [{id: a, url: 'rtsp://cam/x', extra_ffmpeg_args: '-f lavfi'}]",
    "cameras: [{id: a, url: !!python/name:os.system ''}]",
]


@pytest.mark.parametrize("text", HOSTILE_CONFIGS)
def test_hostile_configs_open_nothing(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import av

    opened: list[object] = []
    monkeypatch.setattr(av, "open", lambda *args, **kwargs: opened.append(args))
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ={})
    assert info.value.problems
    assert all(path.startswith("cameras[0]") or path == "" for path, _ in info.value.problems)
    assert opened == []
