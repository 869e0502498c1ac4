"""Loading a config file: safe YAML, ``${FEEDTAG_*}`` substitution, errors with field paths.

Substitution happens on the parsed values, never on the text, so a variable cannot inject
YAML structure. Only variables whose names start with ``FEEDTAG_`` are read;
``${FEEDTAG_X:-fallback}`` gives a fallback; ``$${...}`` is a literal ``${...}``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import TypeAdapter, ValidationError

from feedtag.config.models import FeedtagConfig
from feedtag.errors import ConfigError

MAX_CONFIG_BYTES: Final = 4 * 1024 * 1024
MAX_CONFIG_NODES: Final = 200_000
ENV_PREFIX: Final = "FEEDTAG_"

_VARIABLE = re.compile(r"\$(\$)?\{([^}:]*)(?::-([^}]*))?\}")


class _StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys (YAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictSafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {line})", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> FeedtagConfig:
    """Read, substitute and validate a YAML config; raise :class:`ConfigError` listing all
    problems with their field paths.

    >>> load_config("/no/such.yaml")
    Traceback (most recent call last):
    ...
    feedtag.errors.ConfigError: /no/such.yaml is invalid:
      cannot read file: No such file or directory
    """
    source = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([("", f"cannot read file: {exc.strerror}")], source) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([("", f"file is larger than {MAX_CONFIG_BYTES} bytes")], source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([("", "file is not UTF-8 text")], source) from None
    return parse_config(text, source=source, environ=environ)


def parse_config(
    text: str, *, source: str = "config", environ: Mapping[str, str] | None = None
) -> FeedtagConfig:
    """Validate config ``text`` (YAML or JSON). See :func:`load_config`."""
    try:
        data = yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError([("", f"not valid YAML: {_yaml_reason(exc)}")], source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([("", "the top level must be a mapping")], source)
    problems: list[tuple[str, str]] = []
    counter = [0]
    data = _substitute(data, (), environ if environ is not None else os.environ, problems, counter)
    try:
        config = validate_config(data, source=source)
    except ConfigError as exc:
        # Report every problem at once; skip follow-on errors of fields that failed
        # substitution (their value was blanked).
        failed = {path for path, _ in problems}
        problems += [(path, msg) for path, msg in exc.problems if path not in failed]
    if problems:
        raise ConfigError(problems, source)
    return config


def validate_config(data: dict[str, Any], *, source: str = "config") -> FeedtagConfig:
    """Validate already parsed config data."""
    media_root = _media_root_of(data)
    try:
        return FeedtagConfig.model_validate(data, context={"media_root": media_root})
    except ValidationError as exc:
        raise ConfigError(_problems_of(exc), source) from None


def config_json_schema() -> str:
    """The JSON schema of the config file, as pretty-printed JSON."""
    schema = FeedtagConfig.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "feedtag configuration"
    return json.dumps(schema, indent=2, sort_keys=False)


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("cameras", 2, "url")`` -> ``"cameras[2].url"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _media_root_of(data: dict[str, Any]) -> Path | None:
    value = data.get("media_root")
    try:
        return TypeAdapter(Path | None).validate_python(value)
    except ValidationError:
        return None  # reported by the full validation with its path


def _problems_of(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        message = error["msg"].removeprefix("Value error, ")
        loc = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
        problems.append((field_path(loc), message))
    return problems


def _substitute(
    value: Any,
    loc: tuple[int | str, ...],
    environ: Mapping[str, str],
    problems: list[tuple[str, str]],
    counter: list[int],
) -> Any:
    counter[0] += 1
    if counter[0] > MAX_CONFIG_NODES:
        if counter[0] == MAX_CONFIG_NODES + 1:
            problems.append(("", f"more than {MAX_CONFIG_NODES} values (YAML aliases?)"))
        return None
    if isinstance(value, dict):
        return {
            k: _substitute(v, (*loc, str(k)), environ, problems, counter) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, (*loc, i), environ, problems, counter) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        return _expand(value, field_path(loc), environ, problems)
    return value


def _expand(
    text: str, path: str, environ: Mapping[str, str], problems: list[tuple[str, str]]
) -> str:
    def replace(match: re.Match[str]) -> str:
        escaped, name, fallback = match.group(1), match.group(2), match.group(3)
        if escaped:
            return match.group(0)[1:]
        if not name.startswith(ENV_PREFIX) or not re.fullmatch(r"[A-Z0-9_]+", name):
            problems.append(
                (path, f"${{{name}}}: only variables named {ENV_PREFIX}* (A-Z, 0-9, _) are read")
            )
            return ""
        if name in environ:
            return environ[name]
        if fallback is not None:
            return fallback
        problems.append((path, f"environment variable {name} is not set"))
        return ""

    return _VARIABLE.sub(replace, text)


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)
