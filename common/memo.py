"""Answers worth reading once per request: a user's groups, the restricted models they were
granted. A request asks the same thing several times (visibility, then the write's policy), and
each answer is a query. Outside a request (commands, tasks, tests calling services) nothing is
remembered, so a long-running process never acts on an answer that has since changed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")
_store: ContextVar[dict[tuple[Any, ...], Any] | None] = ContextVar("warden_memo", default=None)


@contextmanager
def scope() -> Iterator[None]:
    """Remember answers until the block ends (``MemoMiddleware``: one request)."""
    token = _store.set({})
    try:
        yield
    finally:
        _store.reset(token)


def remembered(key: tuple[Any, ...], compute: Callable[[], T]) -> T:
    store = _store.get()
    if store is None:
        return compute()
    if key not in store:
        store[key] = compute()
    return store[key]  # type: ignore[no-any-return]


def remember(key: tuple[Any, ...], answer: Any) -> None:
    """Keep an answer read along with something else (a user's groups, with their API token)."""
    store = _store.get()
    if store is not None:
        store[key] = answer


def forget(kind: str) -> None:
    """Drop every remembered answer of one kind (``"granted"``), after a change to it."""
    store = _store.get()
    if store is not None:
        for key in [key for key in store if key[0] == kind]:
            del store[key]


class MemoMiddleware:
    def __init__(self, get_response: Callable[[Any], Any]):
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        with scope():
            return self.get_response(request)
