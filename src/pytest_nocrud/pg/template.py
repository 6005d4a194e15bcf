"""Build-once protocol for template databases, in two layers (the pgtestdb / IntegreSQL idea, made
incremental).

* **Schema layer** (``nocrud_sch_<key>``): the migrations, keyed by the migration inputs. When the
  inputs only ADD files to those of an existing schema layer (every old file unchanged, and what the
  builder accepts, see ``Builder.appended``), the new layer is a clone of that one plus the new files.
* **Data layer** (``nocrud_tpl_<key>``): a clone of the schema layer + fixtures + an optional
  caller-supplied ``after_build`` step, keyed by the schema key + the fixture inputs. Tests clone it.
  A seed-only change therefore clones the schema layer and runs no migration.

Every layer is built the same way. Fast path: a *finalized* layer exists -> use it, no lock taken.
Slow path: a file lock (processes on this machine) and a PostgreSQL advisory lock (machines sharing the
server), look again, then build under a UNIQUE build name (``nocrud_bld_...``), finalize it and only
then rename it to the layer's name. A builder killed at any point therefore leaves only a build
database nobody uses; its tool's process group is recorded on it, so the next build of that layer (or
the GC of any run) ends the group and drops it -- an orphaned tool can never write into a live layer.

Every process that uses a layer holds a shared advisory lock on it for its lifetime (``LayerUse``) and
stamps the layer's last use in its COMMENT note; GC takes the exclusive lock with a try-lock and skips
what it cannot take, and keeps the most recently USED layers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import filelock
import psycopg

from ..errors import BuildError
from . import admin
from . import cache as archives
from .builders import Builder, end_group, watching_spawns
from .conninfo import ConnInfo
from .key import (
    BUILD_PREFIX,
    SCHEMA_PREFIX,
    TEMPLATE_FORMAT_VERSION,
    TEMPLATE_PREFIX,
    TemplateKey,
    compute_key,
    schema_name,
)
from .names import build_prefix
from .pool import choose_strategy
from .private import FILE_MODE, open_private, private_dir
from .procs import ProcessId, group_members

KEEP_TEMPLATES = 3  # most recently used layers of other keys kept, per kind (branch switching stays warm)
Progress = Callable[[str], None]
AfterBuild = Callable[[ConnInfo], None]
Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Template:
    """What the ``nocrud_template`` fixture returns: the data layer, and how its schema layer came to be."""

    name: str
    key: str
    reused: bool
    build_seconds: float
    schema: str = ""  # the schema layer's name
    schema_how: str = "reused"  # "reused" | "built in 6.10s" | "built from <layer> + 1 new file in 0.20s"
    restored: bool = False  # restored from the template cache (``build_seconds``: the restore's time)

    @property
    def how(self) -> str:
        """One line for the progress output and the summary."""
        if self.reused:
            return "reused"
        if self.restored:
            return f"restored from cache in {self.build_seconds:.2f}s"
        return f"built in {self.build_seconds:.2f}s (schema layer {self.schema} {self.schema_how})"


@dataclasses.dataclass(frozen=True)
class LayerKeys:
    """The two keys of one template; ``lineage`` names what schema layers may be appended to."""

    schema: TemplateKey
    data: TemplateKey
    lineage: str

    @property
    def name(self) -> str:
        return self.data.name

    @property
    def schema_name(self) -> str:
        return schema_name(self.schema.key)

    @property
    def unmatched_globs(self) -> tuple[str, ...]:
        return self.schema.unmatched_globs + self.data.unmatched_globs


def layer_keys(
    root: Path,
    schema_globs: Sequence[str],
    builder: Builder,
    server_major: int,
    *,
    extra_inputs: Sequence[str] = (),
) -> LayerKeys:
    """Keys of both layers. Fixture files are never schema inputs (a seed change must not re-migrate),
    even when the configured globs match them; ``extra_inputs`` (e.g. the sources of setup code run by
    ``after_build``) feed the data layer only."""
    fixture_globs = builder.fixture_inputs()
    excluded = ["!" + glob for glob in fixture_globs]
    schema = compute_key(root, [*schema_globs, *excluded], "schema:" + builder.schema_identity, server_major)
    data = compute_key(
        root, [*fixture_globs, *extra_inputs], f"data:{schema.key}:{builder.identity}", server_major
    )
    lineage = hashlib.sha256(
        f"{TEMPLATE_FORMAT_VERSION}\0{server_major}\0{builder.schema_identity}".encode()
    ).hexdigest()[:16]
    return LayerKeys(schema=schema, data=data, lineage=lineage)


class LayerUse:
    """This process's marks on the layers it uses: a shared advisory lock per layer, held on one
    connection until ``close`` (or the process's end). GC never drops a marked layer."""

    def __init__(self, server: ConnInfo) -> None:
        self._server = server
        self._conn: admin.Conn | None = None
        self.marked: set[str] = set()

    def mark(self, name: str) -> None:
        if name in self.marked:
            return
        if self._conn is None or self._conn.closed:
            self._conn = admin.connect(self._server, purpose="layers in use")
        self._conn.execute("SELECT pg_advisory_lock_shared(%s)", [use_lock_id(name)])
        self.marked.add(name)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.marked.clear()


def use_lock_id(name: str) -> int:
    """The advisory lock that marks ``name`` as in use (not the build lock of the same layer)."""
    return admin.lock_id("in use:" + name)


@dataclasses.dataclass(frozen=True)
class TemplateRequest:
    """Everything the template path needs, travelling together (pgtestdb's ``templateState``): which
    server, which layer keys and builder, where this machine's locks live, which run asks (its token,
    and the worker, for messages), and the run's options. ``ensure_template`` takes it whole, and each
    step below reads what it needs from it instead of being handed ten arguments."""

    server: ConnInfo
    keys: LayerKeys
    builder: Builder
    lock_dir: Path
    run_token: str
    rebuild: bool = False  # --nocrud-rebuild: discard the layers once per run
    progress: Progress = lambda message: None
    after_build: AfterBuild | None = None  # runs on the data layer being built, before it is finalized
    use: LayerUse | None = None  # marks the layers in use (default: a new one for this process's life)
    require_objects: bool = True  # a full schema build that created nothing is refused
    worker: str = ""  # names this process in the one-line message other workers get on a failure
    #: The template cache to restore from and write to (``nocrud_template_cache``), asked for only when
    #: the template is missing (finding its tools may take a look around the disk, or say one line).
    cache: Callable[[], archives.TemplateCache | None] | None = None

    @property
    def name(self) -> str:
        return self.keys.name

    @property
    def schema_name(self) -> str:
        return self.keys.schema_name


def ensure_template(request: TemplateRequest) -> Template:
    """Return the finalized data layer for ``request.keys``, building each layer at most once per key
    (or once per run with ``rebuild``): schema layer, then the data layer on it (fixtures, then
    ``after_build``). A full schema build that created nothing is a BuildError when
    ``require_objects`` (the builder migrated some other database), not a template.

    A build that fails is recorded (see ``BuildFailures``): the other processes of the same run then
    fail at once with its reason instead of running the same failing build again; a later run builds
    again."""
    private_dir(request.lock_dir, top=request.lock_dir.parent)
    layers = _Layers(request, request.use or LayerUse(request.server))
    found = layers.existing(request.name)
    if found is not None:
        layers.touch_if_present(request.schema_name)
        return _template(request.keys, found)
    cache = request.cache() if request.cache is not None else None
    if cache is not None and not request.rebuild:
        found = layers.restore(request, cache)
        if found is not None:
            template = _template(request.keys, found)
            if found.built_here:
                request.progress(f"template {request.name} {template.how}")
            return template
    if cache is not None:
        layers.restore_schema(request, cache)
    schema_layer = layers.ensure(request.schema_name, lambda conn: _schema_plan(conn, request))
    data_layer = layers.ensure(request.name, lambda conn: _data_plan(request, schema_layer))
    template = _template(request.keys, data_layer)
    if data_layer.built_here:
        request.progress(f"template {request.name} {template.how}")
        if cache is not None:
            try:
                export_template(
                    request.server, request.keys, cache, progress=request.progress, force=request.rebuild
                )
            except (archives.CacheRefused, OSError, psycopg.Error) as exc:  # the run goes on without it
                request.progress(
                    f"pytest-nocrud: template cache: could not write "
                    f"{cache.archive(request.keys.data.key)}: {request.server.redact(str(exc))}"
                )
    return template


def export_template(
    server: ConnInfo,
    keys: LayerKeys,
    cache: archives.TemplateCache,
    *,
    progress: Progress = lambda message: None,
    force: bool = False,
    restored_from: archives.TemplateCache | None = None,
) -> Path:
    """Write the archive of the finalized template ``keys`` into ``cache`` (both layers, their notes):
    under the archive's file lock and the data layer's advisory lock, atomically. An archive that a
    full check finds usable is kept as it is (``force``: written anyway). A template restored from
    the cache ``restored_from`` has no schema layer on this server: that cache's archive is copied.
    Returns its path."""
    destination = cache.archive(keys.data.key)

    def usable(path: Path) -> bool:
        major = cache.tools.major
        return archives.verified(path, key=keys.data.key, schema_key=keys.schema.key, pg_major=major)

    with cache.locked(keys.data.key):
        if not force and usable(destination):
            progress(f"template cache: {destination} is up to date")
            return destination
        with admin.connect(server, purpose="cache export") as conn:
            schema_here = admin.is_finalized(conn, keys.schema_name)
        source = restored_from.archive(keys.data.key) if restored_from is not None else None
        if not schema_here:
            if source is not None and source != destination and usable(source):
                archives.copy_archive(source, destination)
                progress(f"template cache: wrote {destination} (a copy of {source})")
                return destination
            raise archives.CacheRefused(
                f"schema layer {keys.schema_name} is not on this server (the template was restored from "
                "a template cache without it): export with that cache configured, or --rebuild"
            )
        with cache.workdir() as work, admin.connect(server, purpose="cache export") as conn:
            with admin.advisory_lock(conn, keys.name):  # GC leaves our export clones alone meanwhile
                dumps, notes = {}, {}
                for layer, name in (("schema", keys.schema_name), ("template", keys.name)):
                    if not admin.is_finalized(conn, name):
                        raise archives.CacheRefused(f"layer {name} is not finalized on this server")
                    notes[layer] = archives.portable_note(admin.note_of(conn, name))
                    dumps[layer] = work / archives.DUMP_FILES[layer]
                    _dump_layer(conn, server, cache.tools, name, keys.name, dumps[layer])
            manifest = archives.Manifest(
                key=keys.data.key,
                schema_key=keys.schema.key,
                pg_major=cache.tools.major,
                template_format=TEMPLATE_FORMAT_VERSION,
                sha256={archives.DUMP_FILES[layer]: archives.sha256_of(f) for layer, f in dumps.items()},
                notes=notes,
            )
            archives.write_archive(destination, manifest, dumps)
    progress(f"template cache: wrote {destination}")
    return destination


def _dump_layer(
    conn: admin.Conn, server: ConnInfo, tools: archives.DumpTools, name: str, owner: str, path: Path
) -> None:
    """pg_dump a finalized layer (nobody may connect to it) through a clone of it, dropped after;
    the clone is tagged like a build of ``owner``, so a run killed meanwhile leaves GC a leftover."""
    clone = build_prefix(owner) + "x" + secrets.token_hex(4)
    major = conn.info.server_version // 10000
    strategy = choose_strategy("auto", server_major=major, fsync_on=admin.fsync_enabled(conn))
    admin.create(conn, clone, template=name, strategy=strategy)
    try:
        mine = ProcessId.of(os.getpid()).token
        _comment(conn, clone, {"layer": owner, "owner": mine, "host": socket.gethostname(), "groups": []})
        tools.dump(server.with_db(clone), path)
    finally:
        admin.drop(conn, clone)


def _data_plan(request: TemplateRequest, schema_layer: _Found) -> _Plan:
    """The data layer: a clone of the schema layer, the fixtures, then ``after_build``."""

    def work(target: ConnInfo, log: Log) -> None:
        request.builder.load_fixtures(target, log)
        if request.after_build is not None:
            request.after_build(target)

    schema = request.schema_name
    schema_seconds = 0.0 if schema_layer.reused else schema_layer.seconds
    return _Plan(
        source=schema,
        work=work,
        describe=f"{request.builder.identity} on {schema}",
        note={"schema": schema, "schema_how": schema_layer.how, "schema_seconds": schema_seconds},
    )


def _template(keys: LayerKeys, data: _Found) -> Template:
    """The fixture's view of a data layer; a build's total time includes its schema layer's build."""
    if data.reused:
        return Template(keys.name, keys.data.key, reused=True, build_seconds=0.0, schema=keys.schema_name)
    if data.note.get("restored"):  # the note's seconds: the data layer's restore
        return Template(
            keys.name,
            keys.data.key,
            reused=False,
            build_seconds=data.seconds,
            schema=keys.schema_name,
            schema_how=str(data.note.get("schema_how", "reused")),
            restored=True,
        )
    return Template(
        keys.name,
        keys.data.key,
        reused=False,
        build_seconds=data.seconds + float(data.note.get("schema_seconds", 0.0)),
        schema=keys.schema_name,
        schema_how=str(data.note.get("schema_how", "reused")),
    )


@dataclasses.dataclass(frozen=True)
class _Found:
    """A usable layer: reused (built by an earlier run), or built by this run (here or by another
    worker, whose figures the note carries)."""

    reused: bool
    seconds: float
    how: str
    note: Mapping[str, Any]
    built_here: bool = False  # by this very process (its progress line is ours to print)


@dataclasses.dataclass
class _Plan:
    """How to build one layer: clone ``source`` (or start empty), then ``work`` on it."""

    source: str | None
    work: Callable[[ConnInfo, Log], None]
    describe: str
    note: dict[str, Any]
    appended: int = 0  # files run on top of ``source`` (0: not an appended build)
    new_files: Sequence[str] = ()


def empty_template_message(builder: Builder, dbname: str) -> str:
    return (
        f"the builder ({builder.schema_identity}) created nothing in the template database {dbname}: "
        "no table, view, sequence, function or type outside the system schemas.\n"
        "It most likely migrated another database. Check that the tool's settings read DATABASE_URL "
        "or PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE (pytest-nocrud sets them for the builder), or "
        "map the project's own variables in nocrud_app_env -- it applies to the builder too -- e.g.\n"
        "  nocrud_app_env =\n      DB_NAME={dbname}\n"
        "Nothing was finalized. If an empty template is what you want: nocrud_allow_empty_template = true"
    )


def _schema_plan(conn: admin.Conn, request: TemplateRequest) -> _Plan:
    """A full build, or (appended migrations) a clone of the best older schema layer + the new files."""
    keys, builder, rebuild = request.keys, request.builder, request.rebuild
    manifest = keys.schema.manifest
    note = {"lineage": keys.lineage, "files": manifest}
    best: tuple[str, list[str]] | None = None
    if not rebuild:
        for candidate in admin.names_like(conn, SCHEMA_PREFIX):
            old = admin.note_of(conn, candidate)
            if old.get("lineage") != keys.lineage or not admin.is_finalized(conn, candidate):
                continue
            files = old.get("files")
            new = builder.appended(files, manifest) if isinstance(files, dict) else None
            if new is not None and (best is None or len(new) < len(best[1])):
                best = (candidate, new)
    if best is None:

        def full_build(target: ConnInfo, log: Log) -> None:
            builder.build_schema(target, log)
            if request.require_objects and admin.user_object_count(target) == 0:
                raise BuildError(empty_template_message(builder, target.dbname))

        return _Plan(
            source=None,
            work=full_build,
            describe=f"{builder.schema_identity}, {len(keys.schema.files)} input files",
            note=note,
        )
    source, new_files = best
    return _Plan(
        source=source,
        work=lambda target, log: builder.build_schema(target, log, new_files=new_files),
        describe=f"{builder.schema_identity}, from {source} + {_files(len(new_files))}",
        note=note,
        appended=len(new_files),
        new_files=new_files,
    )


@dataclasses.dataclass(frozen=True)
class Preview:
    """What ``ensure_template`` would do now: per layer "reused" or how it would be built, and the
    SQL of every file that would run (``(relative path, text)``)."""

    data: str
    schema: str
    data_how: str
    schema_how: str
    files: list[tuple[str, str]]


def preview_template(server: ConnInfo, keys: LayerKeys, builder: Builder) -> Preview:
    """Plan a build without creating or changing anything on the server (notes are only read)."""
    name, schema = keys.name, keys.schema_name
    with admin.connect(server, purpose="preview") as conn:
        if admin.is_finalized(conn, name):
            return Preview(name, schema, "reused", "not needed", [])
        data_how = "would be built: fixtures on the schema layer"
        if admin.is_finalized(conn, schema):
            return Preview(name, schema, data_how, "reused", builder.preview_fixtures())
        plan = _schema_plan(conn, TemplateRequest(server, keys, builder, lock_dir=Path(), run_token=""))
    new_files = plan.new_files if plan.appended else None
    how = (
        f"would be built from {plan.source} + {_files(plan.appended)}" if plan.appended else "would be built"
    )
    return Preview(
        name, schema, data_how, how, builder.preview_schema(server, new_files) + builder.preview_fixtures()
    )


def _files(count: int) -> str:
    return f"{count} new file" + ("" if count == 1 else "s")


class _Layers:
    """The build-once protocol for one layer at a time (see the module docstring)."""

    def __init__(self, request: TemplateRequest, use: LayerUse) -> None:
        self.server = request.server
        self.lock_dir = request.lock_dir
        self.run_token = request.run_token
        self.rebuild = request.rebuild
        self.use = use
        self.progress = request.progress
        self.require_objects = request.require_objects
        self.failures = BuildFailures(request.lock_dir, request.run_token, request.worker)

    def existing(self, name: str) -> _Found | None:
        """A finalized layer we may use (marked as used first), or None."""
        self.use.mark(name)
        with admin.connect(self.server) as conn:
            return self._existing(conn, name)

    def _existing(self, conn: admin.Conn, name: str) -> _Found | None:
        if not admin.is_finalized(conn, name):
            return None
        note = admin.note_of(conn, name)
        built_by_this_run = note.get("run") == self.run_token
        if self.rebuild and not built_by_this_run:  # --nocrud-rebuild discards it once per run
            return None
        _touch(conn, name, note)
        if built_by_this_run:  # another worker of this run built it: report that build
            return _Found(False, float(note.get("seconds", 0.0)), str(note.get("how", "reused")), note)
        return _Found(True, 0.0, "reused", note)

    def touch_if_present(self, name: str) -> None:
        with admin.connect(self.server) as conn:
            if admin.is_finalized(conn, name):
                self.use.mark(name)
                _touch(conn, name, admin.note_of(conn, name))

    def ensure(self, name: str, plan_for: Callable[[admin.Conn], _Plan]) -> _Found:
        found = self.existing(name)
        if found is not None:
            return found
        with (
            filelock.FileLock(str(self.lock_dir / f"{name}.lock"), mode=FILE_MODE),
            admin.connect(self.server, purpose="build lock") as conn,
        ):
            with admin.advisory_lock(conn, name):
                found = self._existing(conn, name)  # someone built it meanwhile
                if found is not None:
                    self.failures.forget(name)
                    return found
                self.failures.raise_if_failed(name)  # another worker of this run just failed it
                for leftover in admin.names_like(conn, build_prefix(name)):
                    drop_build(conn, leftover)  # of a builder that died: we hold its layer's lock
                try:
                    plan = plan_for(conn)
                    if plan.source is not None:
                        self.use.mark(plan.source)  # GC must not drop it while we clone it
                    found = self._build(conn, name, plan)
                except Exception as exc:
                    self.failures.record(name, exc)  # still under the locks: the next one sees it
                    raise
                self.failures.forget(name)
            collect_layers(conn, keep=name)
        return found

    def _new_build(self, conn: admin.Conn, name: str, *, template: str | None, strategy: str | None) -> tuple[
        str, dict[str, Any]
    ]:
        """A build database for ``name`` (a unique name), tagged with its owner so that a later run can
        end this process's tools and drop it if we are killed; ``(its name, the tag)``."""
        build = build_prefix(name) + secrets.token_hex(4)
        admin.create(conn, build, template=template, strategy=strategy)
        mine = ProcessId.of(os.getpid())
        tag: dict[str, Any] = {"layer": name, "owner": mine.token, "host": socket.gethostname(), "groups": []}
        _comment(conn, build, tag)
        return build, tag

    def _seal(
        self, conn: admin.Conn, build: str, name: str, note: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """The one way a build database becomes a layer, built or restored from the cache: no session
        left on it, ``VACUUM (FREEZE)``, its note, ``IS_TEMPLATE true ALLOW_CONNECTIONS false``, and
        only then its name. ``note`` is called after the freeze (its figures include it)."""
        admin.terminate(conn, build, wait_ms=5000)  # a builder's stray session would block every clone
        admin.freeze(self.server.with_db(build))  # a read in a test must not change a page (unchanged.py)
        final = note()
        admin.finalize(conn, build, final)
        admin.rename(conn, build, name)  # the layer appears under its name finalized, or not at all
        return final

    def _build(self, conn: admin.Conn, name: str, plan: _Plan) -> _Found:
        started = time.perf_counter()
        admin.drop(conn, name, maybe_template=True)  # an old-format leftover, or the one being rebuilt
        self.progress(f"building template layer {name} ({plan.describe}) ...")
        strategy = None
        if plan.source is not None:  # a layer on a layer: the clone strategy the pool would use
            major = conn.info.server_version // 10000
            strategy = choose_strategy("auto", server_major=major, fsync_on=admin.fsync_enabled(conn))
        build, tag = self._new_build(conn, name, template=plan.source, strategy=strategy)

        def spawned(pgid: int) -> None:  # recorded so a later run can end it if we are killed
            tag["groups"].append(ProcessId.of(pgid).token)
            _comment(conn, build, tag)

        def note() -> dict[str, Any]:
            seconds = time.perf_counter() - started
            how = (
                f"built from {plan.source} + {_files(plan.appended)} in {seconds:.2f}s"
                if plan.appended
                else f"built in {seconds:.2f}s"
            )
            figures = {"run": self.run_token, "built_at": time.time(), "seconds": seconds, "how": how}
            return {**plan.note, **figures}

        try:
            with (
                open_private(self.lock_dir / f"{name}.log", "w", encoding="utf-8") as build_log,
                watching_spawns(spawned),
            ):
                plan.work(self.server.with_db(build), lambda line: print(line, file=build_log, flush=True))
            final = self._seal(conn, build, name, note)
        except BaseException:
            admin.drop(conn, build, maybe_template=True)  # never leave a half-built layer behind
            raise
        self.progress(f"layer {name} {final['how']}")
        return _Found(False, float(final["seconds"]), str(final["how"]), final, built_here=True)

    # -- the template cache ------------------------------------------------------------------------

    def _refused_marker(self, name: str) -> Path:
        digest = hashlib.sha256(self.run_token.encode()).hexdigest()[:12]
        return self.lock_dir / f"{name}.cache-refused.{digest}"

    def restore(self, request: TemplateRequest, cache: archives.TemplateCache) -> _Found | None:
        """The data layer restored from the cache's archive for this key, under the same locks as a
        build and finalized by the same code (``_seal``); None when there is no archive or it is
        refused -- then said in one line (once per run) and the caller builds as usual. A restore that
        fails midway drops its build database.

        Only the data layer: it is what the tests clone, and it does not need the schema layer on this
        server (its dump holds the schema too). The schema layer stays in the archive until a build
        needs it (``restore_schema``): a cold runner pays one restore, not two."""
        name = request.name
        path = cache.archive(request.keys.data.key)
        if not path.is_file() or self._refused_marker(name).exists():
            return None
        with (
            filelock.FileLock(str(self.lock_dir / f"{name}.lock"), mode=FILE_MODE),
            admin.connect(self.server, purpose="cache restore") as conn,
            admin.advisory_lock(conn, name),
        ):
            found = self._existing(conn, name)  # restored or built meanwhile
            if found is not None or self._refused_marker(name).exists():
                return found
            started = time.perf_counter()
            try:
                with cache.workdir() as work:
                    manifest, dumps = archives.read_archive(
                        path, work, key=request.keys.data.key, schema_key=request.keys.schema.key,
                        pg_major=cache.tools.major, layers=("template",),
                    )  # fmt: skip
                    note = {
                        **manifest.notes["template"],
                        "schema": request.schema_name,
                        "schema_how": "left in the template cache (not needed to run)",
                    }
                    final = self._restore_layer(conn, name, cache, dumps["template"], note, started)
            except archives.CacheRefused as exc:
                self._refuse(name, path, exc)
                return None
            collect_layers(conn, keep=name)
        return _Found(False, float(final["seconds"]), str(final["how"]), final, built_here=True)

    def restore_schema(self, request: TemplateRequest, cache: archives.TemplateCache) -> None:
        """Before a build: the schema layer it needs, when this server lacks it, from any archive in
        the cache that holds it (a seed change: only the data layer is built); else the best older
        schema layer of the same lineage that an appended-migration build can start from. Nothing when
        no archive fits; a refused one is said in one line and the build goes on without it."""
        keys = request.keys
        if request.rebuild or self.existing(request.schema_name) is not None:
            return
        wanted = keys.schema.manifest
        best: tuple[int, Path, archives.Manifest] | None = None
        for path, manifest in archives.manifests(cache.directory, pg_major=cache.tools.major):
            if manifest.schema_key == keys.schema.key:
                best = (0, path, manifest)
                break
            note = manifest.notes["schema"]
            files = note.get("files")
            if note.get("lineage") != keys.lineage or not isinstance(files, dict):
                continue
            new = request.builder.appended(files, wanted)
            if new is not None and (best is None or len(new) < best[0]):
                best = (len(new), path, manifest)
        if best is None:
            return
        _, path, manifest = best
        name = schema_name(manifest.schema_key)
        if self._refused_marker(name).exists():
            return
        with (
            filelock.FileLock(str(self.lock_dir / f"{name}.lock"), mode=FILE_MODE),
            admin.connect(self.server, purpose="cache restore") as conn,
            admin.advisory_lock(conn, name),
        ):
            self.use.mark(name)  # GC must not drop it before the build clones it
            if self._existing(conn, name) is not None or self._refused_marker(name).exists():
                return
            try:
                with cache.workdir() as work:
                    dump = archives.read_layer(path, work, manifest, "schema")
                    note = dict(manifest.notes["schema"])
                    self._restore_layer(conn, name, cache, dump, note, time.perf_counter())
            except archives.CacheRefused as exc:
                self._refuse(name, path, exc)

    def _restore_layer(
        self,
        conn: admin.Conn,
        name: str,
        cache: archives.TemplateCache,
        dump: Path,
        note: dict[str, Any],
        started: float,
    ) -> dict[str, Any]:
        """One layer from its dump: a build database from template0, pg_restore, then ``_seal``."""
        for leftover in admin.names_like(conn, build_prefix(name)):
            drop_build(conn, leftover)  # of a builder that died: we hold its layer's lock
        admin.drop(conn, name, maybe_template=True)  # an unfinalized leftover
        self.progress(f"restoring template layer {name} from the template cache ...")
        build, _ = self._new_build(conn, name, template="template0", strategy=None)

        def sealed_note() -> dict[str, Any]:
            seconds = time.perf_counter() - started
            how = f"restored from cache in {seconds:.2f}s"
            extra = {"run": self.run_token, "built_at": time.time(), "seconds": seconds, "how": how}
            return {**note, **extra, "restored": True}

        try:
            cache.tools.restore(self.server.with_db(build), dump)
            if name.startswith(SCHEMA_PREFIX) and self.require_objects:  # the check a build gets
                if admin.user_object_count(self.server.with_db(build)) == 0:
                    raise archives.CacheRefused(f"its schema layer {name} holds no table, view or function")
            final = self._seal(conn, build, name, sealed_note)
        except BaseException:
            admin.drop(conn, build, maybe_template=True)  # never a half-restored layer
            raise
        self.progress(f"layer {name} {final['how']}")
        return final

    def _refuse(self, name: str, path: Path, exc: archives.CacheRefused) -> None:
        """One line, once per run (the marker tells this run's other workers), then a build."""
        self.progress(f"pytest-nocrud: template cache archive {path} ignored: {exc}; building instead")
        with contextlib.suppress(OSError):
            for old in self.lock_dir.glob(f"{name}.cache-refused.*"):
                old.unlink()
            touch = self._refused_marker(name)
            os.close(os.open(touch, os.O_WRONLY | os.O_CREAT, FILE_MODE))


class BuildFailedEarlier(BuildError):
    """Another worker of this run failed this build; the message is one line, naming that worker."""


class BuildFailures:
    """Failed builds of this run, recorded under the lock dir: ``<layer>.failed.<run digest>`` (0600,
    JSON: run token, worker, one-line reason), written while the layer's locks are held.

    The other workers of the run wait on those locks while one builds; when the build fails, each of
    them would otherwise run the same failing build again (a slow migration, once per worker). With the
    record they fail at once with the same reason. The record is keyed by the run, so the next run
    (after a fix) builds again; records of ended runs are removed when the next one is written.
    """

    def __init__(self, lock_dir: Path, run_token: str, worker: str) -> None:
        self.lock_dir = lock_dir
        self.run_token = run_token
        self.worker = worker or "main"

    def path(self, layer: str, run_token: str | None = None) -> Path:
        digest = hashlib.sha256((run_token or self.run_token).encode()).hexdigest()[:12]
        return self.lock_dir / f"{layer}.failed.{digest}"

    def record(self, layer: str, exc: BaseException) -> None:
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else ""
        if not isinstance(exc, BuildError):
            reason = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
        entry = {"run": self.run_token, "worker": self.worker, "reason": reason[:500]}
        with contextlib.suppress(OSError):  # e.g. a full disk: the others just build again
            self._prune(layer)
            path = self.path(layer)
            partial = path.with_name(path.name + ".tmp")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(entry, file)
            os.replace(partial, path)

    def raise_if_failed(self, layer: str) -> None:
        try:
            entry = json.loads(self.path(layer).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if not isinstance(entry, dict) or entry.get("run") != self.run_token:
            return
        worker = str(entry.get("worker") or "main")
        raise BuildFailedEarlier(
            f"building template layer {layer} failed earlier in this run (worker {worker}): "
            f"{entry.get('reason') or 'see its error'}; see the first failing test of worker {worker} "
            "for the full error."
        )

    def forget(self, layer: str) -> None:
        """The layer exists now: no record of it is of use any more."""
        for path in self.lock_dir.glob(f"{layer}.failed.*"):
            with contextlib.suppress(OSError):
                path.unlink()

    def _prune(self, layer: str) -> None:
        """Remove the records of runs that ended (their owner process is gone)."""
        for path in self.lock_dir.glob(f"{layer}.failed.*"):
            try:
                run = json.loads(path.read_text(encoding="utf-8")).get("run")
                ended = not isinstance(run, str) or not ProcessId.parse(run).alive()
            except (OSError, ValueError, AttributeError):
                ended = True
            if ended:
                with contextlib.suppress(OSError):
                    path.unlink()


def drop_build(conn: admin.Conn, name: str) -> None:
    """Drop a build database of a builder that is gone, ending its tool's process group first (if it
    ran on this machine), so an orphaned ``command:`` tool cannot go on writing anywhere."""
    tag = admin.note_of(conn, name)
    owner = tag.get("owner")
    if (
        tag.get("host") == socket.gethostname()
        and isinstance(owner, str)
        and not ProcessId.parse(owner).alive()
    ):
        for token in tag.get("groups", []):
            leader = ProcessId.parse(token)
            if leader.alive() or group_members(leader.pid):
                end_group(leader.pid)
    admin.drop(conn, name, maybe_template=True)


def collect_layers(conn: admin.Conn, *, keep: str = "", keep_count: int = KEEP_TEMPLATES) -> list[str]:
    """Drop build databases of dead builders and all but the ``keep_count`` most recently used layers
    of each kind; never one that a live run marks as in use (here or on another machine)."""
    dropped = []
    for build in admin.names_like(conn, BUILD_PREFIX):
        layer = admin.note_of(conn, build).get("layer")
        if not isinstance(layer, str) or not admin.try_advisory_lock(conn, layer):
            continue  # being built right now (or not ours to judge)
        try:
            drop_build(conn, build)
            dropped.append(build)
        finally:
            admin.advisory_unlock(conn, layer)
    for prefix in (TEMPLATE_PREFIX, SCHEMA_PREFIX):
        others = [n for n in admin.names_like(conn, prefix) if n != keep]
        by_use = sorted(others, key=lambda n: last_use(admin.note_of(conn, n)), reverse=True)
        for old in by_use[keep_count:]:
            if _drop_unless_used(conn, old):
                dropped.append(old)
    return dropped


def _drop_unless_used(conn: admin.Conn, name: str) -> bool:
    key = use_lock_id(name)
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
    if not (row and row[0]):
        return False  # a live run uses it
    try:
        admin.drop(conn, name, maybe_template=True)
        return True
    except psycopg.Error:  # being cloned right now: try next time
        return False
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", [key])


def last_use(note: Mapping[str, Any]) -> float:
    """When a layer was last used (or built): what GC evicts by and ``nocrud status`` shows."""
    return max(float(note.get("used_at", 0.0)), float(note.get("built_at", 0.0)))


def _touch(conn: admin.Conn, name: str, note: dict[str, Any]) -> None:
    """Stamp the layer's last use in its note (what GC evicts by)."""
    try:
        _comment(conn, name, {**note, "used_at": time.time()})
    except psycopg.Error:  # a concurrent stamp won: it is just as recent
        pass


def _comment(conn: admin.Conn, name: str, note: Mapping[str, Any]) -> None:
    admin.set_note(conn, name, dict(note))


__all__ = [
    "BuildError",
    "BuildFailedEarlier",
    "LayerKeys",
    "LayerUse",
    "Template",
    "collect_layers",
    "ensure_template",
    "export_template",
    "layer_keys",
    "preview_template",
]
