"""Errors meant for the user, and a wrapper that turns them into one line and a non-zero exit.

Entry points wrap their ``main`` with :func:`cli_main`; code deep inside raises :class:`UserError` with a
message that says what is wrong and what to do, instead of letting a traceback escape.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input (flag, config, data row, checkpoint): reported as one line, exit code 2."""


class OfflineError(UserError):
    """A Hub resource was asked for while the Hub is unreachable or HF_HUB_OFFLINE is set."""


class NonFiniteLossError(UserError):
    """Training produced a NaN/inf loss; the last good checkpoint is kept."""


def fail(message: str, code: int = EXIT_USER_ERROR) -> None:
    """Print ``error: message`` on stderr (one line) and exit with ``code``."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def cli_main(fn: F) -> F:
    """Decorator for script entry points: UserError (and friends) become one line on stderr and exit 2.

    KeyboardInterrupt exits 130 without a traceback. Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]
