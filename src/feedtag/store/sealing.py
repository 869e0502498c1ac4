"""Camera secrets at rest: never in clear text.

A secret of a camera stored through the API (its password, a secret query value of its URL)
is stored in one of three *sealed* forms:

- ``${FEEDTAG_CAMERA_NAME}``: a reference to an environment variable of the server, kept
  exactly as written and read each time the camera starts. Only ``FEEDTAG_CAMERA_*`` names:
  an API caller must not be able to send the server's other secrets (its admin token, the
  store password, the key below) to a camera address of their choosing.
- ``fernet:TOKEN``: the value encrypted with the key in ``FEEDTAG_SECRET_KEY`` (Fernet from
  ``cryptography``: AES-128-CBC with an HMAC-SHA256, a random IV per value).
- ``config:``: the same value as the config file's camera of the same id, read from the file
  at each start (a config camera changed through the API keeps its secrets in the file).

Without a key, a clear-text value cannot be sealed and :meth:`SecretBox.seal` refuses it.

>>> box = SecretBox(Fernet.generate_key().decode())
>>> sealed = box.seal("hunter2", "password")
>>> sealed.startswith("fernet:"), box.open(sealed, "password", {})
(True, 'hunter2')
>>> box.seal("${FEEDTAG_CAMERA_GATE}", "password")
'${FEEDTAG_CAMERA_GATE}'
>>> box.open("${FEEDTAG_CAMERA_GATE}", "password", {"FEEDTAG_CAMERA_GATE": "pw"})
'pw'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from cryptography.fernet import Fernet, InvalidToken

from feedtag.errors import ConfigError

SECRET_KEY_VARIABLE: Final = "FEEDTAG_SECRET_KEY"  # noqa: S105 - a name, not a secret
REFERENCE_PREFIX: Final = "FEEDTAG_CAMERA_"
FERNET_PREFIX: Final = "fernet:"
CONFIG_MARKER: Final = "config:"

_REFERENCE: Final = re.compile(r"\$\{([A-Z0-9_]+)\}")

#: how to make a key, for the messages that ask for one
KEY_HINT: Final = (
    f"set {SECRET_KEY_VARIABLE} in the server's environment to a Fernet key (make one with "
    "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
    f", or give the value as a reference ${{{REFERENCE_PREFIX}NAME}} to an environment "
    "variable of the server"
)


def reference_name(value: str) -> str | None:
    """The variable ``value`` refers to when it is exactly ``${NAME}``, else None.

    >>> reference_name("${FEEDTAG_CAMERA_X}"), reference_name("pw${FEEDTAG_CAMERA_X}")
    ('FEEDTAG_CAMERA_X', None)
    """
    match = _REFERENCE.fullmatch(value)
    return None if match is None else match.group(1)


def is_sealed(value: str) -> bool:
    """True for a value already in a sealed form (it is stored as it is)."""
    return value.startswith((FERNET_PREFIX, CONFIG_MARKER)) or reference_name(value) is not None


class SecretBox:
    """Seals and opens camera secrets with the key of ``FEEDTAG_SECRET_KEY`` (or none)."""

    def __init__(self, key: str | None) -> None:
        self._fernet: Fernet | None = None
        if key:
            try:
                self._fernet = Fernet(key.encode("ascii"))
            except (ValueError, UnicodeEncodeError):
                # The message never echoes the value: it is a secret, if a malformed one.
                raise ConfigError(
                    [(SECRET_KEY_VARIABLE, "not a Fernet key (32 bytes, URL-safe base64)")],
                    "environment",
                ) from None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SecretBox:
        return cls(environ.get(SECRET_KEY_VARIABLE))

    def seal(self, value: str, field: str) -> str:
        """The form ``value`` is stored in; :class:`ConfigError` naming ``field`` when it
        cannot be stored (clear text without a key, a reference to another variable)."""
        if "${" in value:
            name = reference_name(value)
            if name is None:
                problem = f"write an environment reference alone, as ${{{REFERENCE_PREFIX}NAME}}"
                raise ConfigError([(field, problem)], "camera")
            if not name.startswith(REFERENCE_PREFIX):
                problem = f"${{{name}}}: only variables named {REFERENCE_PREFIX}* can be used here"
                raise ConfigError([(field, problem)], "camera")
            return value
        if is_sealed(value):
            return value
        if self._fernet is None:
            problem = f"a clear-text secret is stored only encrypted: {KEY_HINT}"
            raise ConfigError([(field, problem)], "camera")
        return FERNET_PREFIX + self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def open(self, sealed: str, field: str, environ: Mapping[str, str]) -> str:
        """The value of a sealed secret (not ``config:``, which the caller resolves);
        :class:`ConfigError` naming ``field`` and why, never the value."""
        name = reference_name(sealed)
        if name is not None:
            if not name.startswith(REFERENCE_PREFIX):
                problem = f"${{{name}}}: only variables named {REFERENCE_PREFIX}* can be used here"
                raise ConfigError([(field, problem)], "camera")
            if name not in environ:
                raise ConfigError([(field, f"environment variable {name} is not set")], "camera")
            return environ[name]
        if not sealed.startswith(FERNET_PREFIX):
            raise ConfigError([(field, "not a stored secret")], "camera")
        if self._fernet is None:
            problem = f"stored encrypted, but {SECRET_KEY_VARIABLE} is not set"
            raise ConfigError([(field, problem)], "camera")
        try:
            token = sealed.removeprefix(FERNET_PREFIX).encode("ascii")
            return self._fernet.decrypt(token).decode("utf-8")
        except (InvalidToken, UnicodeError):
            problem = f"cannot be decrypted with {SECRET_KEY_VARIABLE} (was the key changed?)"
            raise ConfigError([(field, problem)], "camera") from None
