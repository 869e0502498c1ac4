"""API tokens: made with :mod:`secrets`, shown once, stored only as a hash.

A token is 32 random bytes (256 bits) in URL-safe base64 behind the prefix ``ft_``. The
store keeps its SHA-256, and a request's token is found by hashing it and looking the hash
up. A fast hash is right here, where a slow one (bcrypt, Argon2) is right for passwords:
those exist to slow down guessing of low-entropy secrets, and nobody can guess a 256-bit
random value however fast the hash is. A fast hash also lets every request be one indexed
lookup, and a stolen table gives no usable token.

>>> from feedtag.store.engine import create_store_engine
>>> from feedtag.store.migrations import upgrade
>>> engine = create_store_engine("sqlite://"); upgrade(engine)
>>> token, record = create_token(engine, "wall screen", Role.VIEWER, cameras=["door"])
>>> token.startswith("ft_"), lookup_token(engine, token) == record
(True, True)
>>> revoke_token(engine, record.token_id), lookup_token(engine, token)
(True, None)
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Engine, insert, select, update

from feedtag.errors import StoreError
from feedtag.store.engine import store_error
from feedtag.store.schema import api_tokens

TOKEN_PREFIX: Final = "ft_"  # noqa: S105 - a prefix, not a secret
TOKEN_BYTES: Final = 32
MAX_NAME_CHARS: Final = 200


class Role(enum.StrEnum):
    """What a token may do; each role may do everything the roles before it may."""

    VIEWER = "viewer"  # read cameras' status, events, tags, stats, snapshots, thumbnails
    OPERATOR = "operator"  # also add, change and remove cameras
    ADMIN = "admin"  # also clips (raw media), the audit log, tokens, metrics

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A stored token, without its secret. ``cameras`` None means every camera."""

    token_id: str
    name: str
    role: Role
    cameras: frozenset[str] | None
    created_at: float
    revoked_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "token_id": self.token_id,
            "name": self.name,
            "role": self.role.value,
            "cameras": None if self.cameras is None else sorted(self.cameras),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def _record(row: Any) -> TokenRecord:
    data = row._mapping
    cameras = data["cameras"]
    return TokenRecord(
        token_id=data["token_id"],
        name=data["name"],
        role=Role(data["role"]),
        cameras=None if cameras is None else frozenset(str(c) for c in cameras),
        created_at=data["created_at"],
        revoked_at=data["revoked_at"],
    )


def create_token(
    engine: Engine, name: str, role: Role, cameras: Iterable[str] | None = None
) -> tuple[str, TokenRecord]:
    """Store a new token; returns the token (show it once, it cannot be read back) and its
    record."""
    if not name.strip() or len(name) > MAX_NAME_CHARS:
        raise StoreError(f"token name: expected 1 to {MAX_NAME_CHARS} characters")
    token = new_token()
    record = TokenRecord(
        token_id=secrets.token_hex(8),
        name=name,
        role=Role(role),
        cameras=None if cameras is None else frozenset(cameras),
        created_at=time.time(),
    )
    row = {**record.to_dict(), "token_hash": hash_token(token)}
    try:
        with engine.begin() as connection:
            connection.execute(insert(api_tokens).values(**row))
    except Exception as error:  # noqa: BLE001 - translated at the store boundary
        raise store_error(error, "token write") from None
    return token, record


def lookup_token(engine: Engine, token: str) -> TokenRecord | None:
    """The live (not revoked) token record of ``token``, or None."""
    return lookup_token_hash(engine, hash_token(token))


def lookup_token_hash(engine: Engine, token_hash: str) -> TokenRecord | None:
    """The live token record stored under ``token_hash``, or None."""
    statement = select(api_tokens).where(
        api_tokens.c.token_hash == token_hash, api_tokens.c.revoked_at.is_(None)
    )
    try:
        with engine.connect() as connection:
            row = connection.execute(statement).first()
    except Exception as error:  # noqa: BLE001 - translated at the store boundary
        raise store_error(error, "token read") from None
    return None if row is None else _record(row)


def list_tokens(engine: Engine, *, include_revoked: bool = False) -> list[TokenRecord]:
    """Every token, oldest first."""
    statement = select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.token_id)
    if not include_revoked:
        statement = statement.where(api_tokens.c.revoked_at.is_(None))
    try:
        with engine.connect() as connection:
            return [_record(row) for row in connection.execute(statement)]
    except Exception as error:  # noqa: BLE001 - translated at the store boundary
        raise store_error(error, "token read") from None


def revoke_token(engine: Engine, token_id: str) -> bool:
    """Revoke a token; False if there is no live token with that id."""
    statement = (
        update(api_tokens)
        .where(api_tokens.c.token_id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=time.time())
    )
    try:
        with engine.begin() as connection:
            return bool(connection.execute(statement).rowcount)
    except Exception as error:  # noqa: BLE001 - translated at the store boundary
        raise store_error(error, "token write") from None


def has_admin_token(engine: Engine) -> bool:
    """Whether a live admin token exists (one of the admin credentials the API needs)."""
    return any(record.role is Role.ADMIN for record in list_tokens(engine))
