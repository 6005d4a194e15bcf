"""The one exception tree of pytest-nocrud (as in httpx): catch ``NocrudError`` to catch them all.

Every message is a complete, human-readable explanation -- what failed and what to do -- that the
plugin prints as is, without a traceback. The classes live here, not beside the code that raises them,
so both wings (``pg/`` and ``flows/``) and the plugin share them without importing each other.
"""

from __future__ import annotations


class NocrudError(Exception):
    """Root of every error pytest-nocrud raises."""


class UsageError(NocrudError):
    """A setting is wrong (bad builder, bad placeholder, bad DSN): fix the ini file or the option."""


# -- PostgreSQL wing -----------------------------------------------------------------------------------


class ShardMismatch(UsageError):
    """``nocrud merge`` was given reports that cannot be one run: different endpoint lists or app versions."""


class ServerError(NocrudError):
    """PostgreSQL cannot be used; the message says why and what to do."""


class BinariesNotFound(ServerError):
    """No usable server binaries: the message lists every way out."""


class BuildError(NocrudError):
    """Building the template failed: what ran, where it failed, the tool's own error."""


class PoolError(NocrudError):
    """The pool cannot produce clones (the background thread's error, re-raised in the test)."""


class HandoffError(PoolError):
    """A session would not leave the worker's database, so the fresh clone cannot take its name."""


# -- app and modes ---------------------------------------------------------------------------------------


class AppStartError(NocrudError):
    """The app did not come up; the message has the exit code or reason and its last log lines."""


class WrongDatabaseError(AppStartError):
    """The app under test uses another database than the test's: the run stops before it writes there."""


class AppExited(NocrudError):
    """The app under test exited mid-run (its exit code or signal, and what happens next)."""


class SerialError(NocrudError):
    """Serial mode's target is missing or unusable; the message says which variable to set."""


class SetupFailed(NocrudError):
    """A shared resource could not be set up; ``brief`` is shown after the first full report."""

    def __init__(self, message: str, brief: str) -> None:
        super().__init__(message)
        self.brief = brief


# -- flows wing ----------------------------------------------------------------------------------------


class FlowDefinitionError(NocrudError, ValueError):
    """The flow cannot run as declared: unknown dependency, cycle, duplicate name, bad option."""


class FlowFailed(NocrudError, AssertionError):
    """A flow failed; the message is the step table and the failing request."""


def first_line(exc: BaseException) -> str:
    """An exception's first message line (its type name if it has no message): enough for one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
