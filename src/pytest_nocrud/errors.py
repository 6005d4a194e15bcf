"""The one exception type a template build raises, in its own module so that the SQL runner and the
builders (and the template layer above them) can share it without importing each other."""

from __future__ import annotations


class BuildError(Exception):
    """Building the template schema failed; ``str(exc)`` is a complete, human-readable explanation
    (what ran, where it failed, the tool's own error) that the plugin prints as is, without a traceback."""
