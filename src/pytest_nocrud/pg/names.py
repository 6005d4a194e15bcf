"""Every database name pytest-nocrud makes, and how to recognise it again: one place for the rules.

``nocrud_sch_<key16>``          a schema layer (migrations only)
``nocrud_tpl_<key16>``          a data layer: the template tests clone
``nocrud_bld_<s|t><key16>_<hex>`` a layer being built, renamed to its final name when finalized
``nocrud_r<hash10>_<worker>``   a worker's stable test database; its clones and dirty databases add
                                ``_c<n>`` / ``_d<n>``, so the collector can find a dead run's leftovers
``nocrud_failed_<test>_<hash8>`` a failed test's database kept for inspection (``--nocrud-keep-failed``)

Every name fits PostgreSQL's 63 bytes: it would silently truncate a longer one, and two long names
could become one.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL silently truncates longer names

TEMPLATE_PREFIX = "nocrud_tpl_"  # data layers: what tests clone
SCHEMA_PREFIX = "nocrud_sch_"  # schema layers: migrations only
BUILD_PREFIX = "nocrud_bld_"  # a layer being built (renamed to its final name when finalized)
RUN_PREFIX = "nocrud_r"  # a run's pool databases: nocrud_r<hash>_<worker>[_c<n>|_d<n>]
FAILED_PREFIX = "nocrud_failed_"  # failed tests' databases, kept for inspection

#: A pool database; group 1 is its owner prefix (the advisory lock that says the run is alive).
OWNED_NAME = re.compile(r"^(nocrud_r[0-9a-f]{10}_[A-Za-z0-9]{1,12})(?:_[cd]\d+)?$")


def check_name(name: str) -> str:
    """Refuse names PostgreSQL would truncate: two long names could silently become one."""
    if not name or len(name.encode()) > MAX_NAME_BYTES:
        raise ValueError(f"database name {name!r} must be 1..{MAX_NAME_BYTES} bytes")
    return name


def template_name(key: str) -> str:
    """Database name of the template for ``key`` (64 bits of the hash: collisions are not a concern,
    and the name stays far below PostgreSQL's 63-byte identifier limit)."""
    return TEMPLATE_PREFIX + key[:16]


def schema_name(key: str) -> str:
    """Database name of the schema layer for a schema key."""
    return SCHEMA_PREFIX + key[:16]


def build_prefix(layer: str) -> str:
    """Build databases of ``layer``: ``nocrud_bld_`` + t|s + its key part + ``_``."""
    kind = "s" if layer.startswith(SCHEMA_PREFIX) else "t"
    return BUILD_PREFIX + kind + layer.rsplit("_", 1)[-1] + "_"


def pool_prefix(run_token: str, worker: str) -> str:
    """``nocrud_r<run hash>_<worker>``: short, unique per run and worker, parseable by the collector."""
    digest = hashlib.sha256(run_token.encode()).hexdigest()[:10]
    worker_part = re.sub(r"[^A-Za-z0-9]", "", worker)[:12] or "main"
    return f"{RUN_PREFIX}{digest}_{worker_part}"


def clone_name(stable: str, seq: int) -> str:
    """A ready clone of a worker's pool, waiting to be renamed into the stable name."""
    return f"{stable}_c{seq}"


def dirty_name(stable: str, seq: int) -> str:
    """A finished test's database, renamed away from the stable name until the pool drops it."""
    return f"{stable}_d{seq}"


def check_pool_prefix(prefix: str) -> str:
    """The stable name itself, and its longest suffixed names, must all fit."""
    check_name(dirty_name(prefix, 10**9))
    return check_name(prefix)


def kept_name(nodeid: str, salt: str) -> str:
    """``nocrud_failed_<test>_<hash>``: recognisable, unique per test id (and ``salt``), within 63 bytes."""
    test = re.sub(r"[^A-Za-z0-9]+", "_", nodeid.rsplit("::", 1)[-1]).strip("_")[:32]
    digest = hashlib.sha256(f"{nodeid}:{salt}".encode()).hexdigest()[:8]
    return f"{FAILED_PREFIX}{test}_{digest}"
