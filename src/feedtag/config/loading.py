"""Loading a config file: safe YAML, ``${FEEDTAG_*}`` substitution, errors with field paths.

Substitution happens on the parsed values, never on the text, so a variable cannot inject
YAML structure. Only variables whose names start with ``FEEDTAG_`` are read;
``${FEEDTAG_X:-fallback}`` gives a fallback; ``$${...}`` is a literal ``${...}``.

A config file is untrusted input with bounds: at most :data:`MAX_CONFIG_BYTES`, nested at
most :data:`MAX_CONFIG_DEPTH` levels, at most :data:`MAX_CONFIG_NODES` values with every
alias counted as the copy it stands for. The bounds are checked while the YAML is composed,
so a hostile file (``cameras: [[[[...``, a billion laughs) is refused before PyYAML's
recursive composer or constructor could run out of stack or memory; every failure, whatever
raised it, is a :class:`ConfigError`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import TypeAdapter, ValidationError

from feedtag.config.models import FeedtagConfig
from feedtag.errors import ConfigError

#: a camera takes 100-300 bytes of YAML, so this holds several thousand (was 4 MiB)
MAX_CONFIG_BYTES: Final = 8 * 1024 * 1024
#: a real config nests about 8 levels (cameras, a camera, zones, a zone, polygon, point)
MAX_CONFIG_DEPTH: Final = 64
#: values (scalars, lists, mappings) after expanding aliases
MAX_CONFIG_NODES: Final = 1_000_000
ENV_PREFIX: Final = "FEEDTAG_"

_VARIABLE = re.compile(r"\$(\$)?\{([^}:]*)(?::-([^}]*))?\}")


class _LimitExceeded(yaml.YAMLError):
    """A bound of the module docstring was passed; the message names it and the line."""


class _StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys (YAML silently keeps the last one) and
    counts depth and values while composing.

    An alias is counted as the subtree it names, at the depth where it is used: that is what
    the recursive constructor and :func:`_substitute` walk.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0  # of the node being composed; the top level is 1
        self._deepest = 0  # deepest level reached inside the node being composed
        self._nodes = 0
        self._anchors_seen: dict[str, tuple[int, int]] = {}  # anchor -> (height, nodes)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: yaml.NodeEvent = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.AliasEvent):
            # An anchor still being composed (a recursive alias) is refused by the
            # constructor; count it as one value here.
            height, nodes = self._anchors_seen.get(event.anchor or "", (1, 1))
            self._count(self._depth + height, nodes, line)
            return super().compose_node(parent, index)
        self._depth += 1
        self._count(self._depth, 1, line)
        outer_deepest, self._deepest = self._deepest, self._depth
        nodes_before = self._nodes
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if event.anchor is not None:
            height = self._deepest - self._depth
            self._anchors_seen[event.anchor] = (height, self._nodes - nodes_before)
        self._deepest = max(outer_deepest, self._deepest)
        return node

    def _count(self, depth: int, nodes: int, line: int) -> None:
        if depth > MAX_CONFIG_DEPTH:
            raise _LimitExceeded(
                f"config nests deeper than {MAX_CONFIG_DEPTH} levels (line {line})"
            )
        self._deepest = max(self._deepest, depth)
        self._nodes += nodes
        if self._nodes > MAX_CONFIG_NODES:
            raise _LimitExceeded(
                f"config has more than {MAX_CONFIG_NODES} values, counting each alias as "
                f"the values it repeats (line {line})"
            )


def _construct_mapping(loader: _StrictSafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):  # {[1]: x}: a list or mapping as a key
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value", key_node.start_mark
            )
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
        raw = _read_bounded(path)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([("", f"cannot read file: {reason}")], source) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([("", _TOO_LARGE)], source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"file is not UTF-8 text (byte {exc.start + 1})"
        raise ConfigError([("", reason)], source) from None
    return parse_config(text, source=source, environ=environ)


_TOO_LARGE: Final = f"config is larger than {MAX_CONFIG_BYTES} bytes"


def _read_bounded(path: str | Path) -> bytes:
    """At most ``MAX_CONFIG_BYTES + 1`` bytes of a regular file. Opened non-blocking and
    checked before reading, so a FIFO or device named as the config cannot hang the CLI."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return handle.read(MAX_CONFIG_BYTES + 1)


def parse_config(
    text: str, *, source: str = "config", environ: Mapping[str, str] | None = None
) -> FeedtagConfig:
    """Validate config ``text`` (YAML or JSON). See :func:`load_config`."""
    if len(text) > MAX_CONFIG_BYTES:  # characters; load_config has counted the bytes
        raise ConfigError([("", _TOO_LARGE)], source)
    data = _parse_yaml(text, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([("", "the top level must be a mapping")], source)
    problems: list[tuple[str, str]] = []
    data = _substitute(data, (), environ if environ is not None else os.environ, problems)
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


def _parse_yaml(text: str, source: str) -> Any:
    """The YAML value of ``text``; any failure to parse it is a :class:`ConfigError`."""
    try:
        return yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except _LimitExceeded as exc:
        reason = str(exc)
    except yaml.YAMLError as exc:
        reason = f"not valid YAML: {_yaml_reason(exc)}"
    except (ValueError, TypeError, OverflowError) as exc:
        # SafeConstructor's own conversions: "2001-13-01" (month 13), a 5,000-digit int.
        first_clause = (str(exc).splitlines() or [type(exc).__name__])[0].split(";")[0]
        reason = f"not valid YAML: a value cannot be read ({first_clause[:120]})"
    except (RecursionError, MemoryError):
        # The limits above should make this unreachable; a traceback must stay so.
        reason = "config is too deeply nested or too large to read"
    raise ConfigError([("", reason)], source) from None


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
) -> Any:
    # Bounded: the loader has refused more than MAX_CONFIG_NODES values (aliases expanded)
    # and more than MAX_CONFIG_DEPTH levels.
    if isinstance(value, dict):
        return {k: _substitute(v, (*loc, str(k)), environ, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, (*loc, i), environ, problems) for i, v in enumerate(value)]
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
