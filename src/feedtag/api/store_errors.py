"""Where a store failure becomes an HTTP answer: one table, one context manager.

Every route that reads or writes the store does so inside ``with store_errors(ANSWER):``,
where ``ANSWER`` is one of the rows below. A :class:`~feedtag.errors.StoreUnavailable` (the
database did not answer) is always a 503 with the row's message. Any other
:class:`~feedtag.errors.StoreError` is either the caller's mistake (a bad cursor, a duplicate
token name: 422 with the error's own message, which never carries a credential) or, where
the call takes no input a caller could get wrong, the store's (503 with the row's message).

========================= ================================================= ============
row                       503 message                                       other errors
========================= ================================================= ============
``TOKEN_CHECK``           the token store is unavailable                    503
``SIGN_IN``               token store unavailable                           503
``AUDIT_WRITE``           the audit log cannot be written, so the read ...  503
``ADMIN_READ``            store unavailable                                 503
``ADMIN_QUERY``           store unavailable                                 422
``EVENTS_QUERY``          the store is unavailable                          422
``CAMERA_WRITE``          the camera change cannot be stored, so it is ...  503
========================= ================================================= ============

Routes that turn a store refusal into "not found" (a media path outside the media root) do
not use this: for them the refusal is an answer, not a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from fastapi import HTTPException, status

from feedtag.errors import StoreError, StoreUnavailable


@dataclass(frozen=True, slots=True)
class StoreErrorAnswer:
    """How one kind of store call answers a store failure.

    ``unavailable`` is the detail of the 503; ``invalid_is_422`` says whether a store error
    other than :class:`~feedtag.errors.StoreUnavailable` is the caller's (422 with the
    error's message) or the store's (503 like an outage).
    """

    unavailable: str
    invalid_is_422: bool

    def http_error(self, error: StoreError) -> HTTPException:
        """The HTTP answer to ``error``.

        >>> EVENTS_QUERY.http_error(StoreError("bad cursor")).status_code
        422
        >>> ADMIN_READ.http_error(StoreError("bad row")).detail
        'store unavailable'
        """
        if self.invalid_is_422 and not isinstance(error, StoreUnavailable):
            return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error))
        return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, self.unavailable)


#: checking a request's token or session cookie (every protected route)
TOKEN_CHECK: Final = StoreErrorAnswer("the token store is unavailable", invalid_is_422=False)
#: signing in with a token
SIGN_IN: Final = StoreErrorAnswer("token store unavailable", invalid_is_422=False)
#: writing the audit entry that every read of events and media needs first
AUDIT_WRITE: Final = StoreErrorAnswer(
    "the audit log cannot be written, so the read is refused; try again later",
    invalid_is_422=False,
)
#: admin calls without caller input the store could refuse (list or revoke tokens)
ADMIN_READ: Final = StoreErrorAnswer("store unavailable", invalid_is_422=False)
#: admin calls with caller input (audit search, new token)
ADMIN_QUERY: Final = StoreErrorAnswer("store unavailable", invalid_is_422=True)
#: event search, counts and single events
EVENTS_QUERY: Final = StoreErrorAnswer("the store is unavailable", invalid_is_422=True)
#: storing a camera added, changed or removed through the API (before the engine changes)
CAMERA_WRITE: Final = StoreErrorAnswer(
    "the camera change cannot be stored, so it is not made; try again later",
    invalid_is_422=False,
)


@contextmanager
def store_errors(answer: StoreErrorAnswer) -> Iterator[None]:
    """Run the body; a :class:`~feedtag.errors.StoreError` leaves as ``answer`` maps it.

    The store error is not chained: its cause may be a driver error whose text names the
    database URL.

    >>> try:
    ...     with store_errors(SIGN_IN):
    ...         raise StoreUnavailable("connection refused")
    ... except HTTPException as answer:
    ...     print(answer.status_code, answer.detail)
    503 token store unavailable
    """
    try:
        yield
    except StoreError as error:
        raise answer.http_error(error) from None
