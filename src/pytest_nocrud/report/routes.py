"""A request path's *route*: ids replaced by ``{id}`` so timings and coverage group per endpoint.

``/api/actors/17/?page=2`` and ``/api/actors/3/`` are the same endpoint; grouping by raw path would
give each object its own row (and its own too-small sample). A segment counts as an id when it is a
number, a UUID, or a long hex/base64-ish token with at least one digit (slugs like ``tag-categories``
stay as they are).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

_ID_SEGMENT = re.compile(
    r"""^(
        \d+                                                            # 17
      | [0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}  # a UUID
      | (?=[^/]*\d)[0-9A-Za-z_-]{20,}                                   # an opaque token
    )$""",
    re.VERBOSE,
)


def route_of(path: str) -> str:
    """``/api/actors/17/?x=1`` -> ``/api/actors/{id}/`` (query dropped, id-like segments replaced)."""
    bare = path.split("?", 1)[0].split("#", 1)[0] or "/"
    return "/".join("{id}" if _ID_SEGMENT.match(part) else part for part in bare.split("/"))


def path_only(path: str) -> str:
    """The path without its query string."""
    return path.split("?", 1)[0] or "/"


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported figure was really measured)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]
