"""Exceptions that survive pickling whatever their constructor's signature.

``BaseException.__reduce__`` rebuilds an error as ``cls(*self.args)``. Our exceptions take
keyword-only or differently shaped arguments, so that call fails on the receiving side and a
worker process's real error arrives as a ``TypeError`` (or a broken pool). These rebuild the
instance without ``__init__`` and restore its attributes.
"""

from __future__ import annotations

__all__ = ["PicklableError"]


def _restore(cls: type[BaseException], args: tuple[object, ...]) -> BaseException:
    error = cls.__new__(cls, *args)
    error.args = args
    return error


class PicklableError(Exception):
    """Base for exceptions whose ``__init__`` does not take ``self.args`` back."""

    def __reduce__(self) -> tuple[object, ...]:
        return (_restore, (type(self), self.args), self.__dict__)
