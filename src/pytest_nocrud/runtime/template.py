"""The template part: the builder, both layer keys and ``ensure_template`` with this run's options,
and the ``@template_setup`` functions run against an app on the data layer being built."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..app.process import (
    AppProcess,
    settings_env,
)
from ..app.setups import SetupFunction, run_setups, setup_inputs
from ..config import Settings
from ..errors import (
    BuildError,
)
from ..pg import setup_store
from ..pg.binaries import dump_bindir
from ..pg.builders import ACCEPTED_FORMS, Builder, detect_django_project, parse_builder
from ..pg.cache import DumpTools, TemplateCache
from ..pg.conninfo import ConnInfo
from ..pg.procs import indented
from ..pg.template import (
    LayerKeys,
    LayerUse,
    Template,
    TemplateRequest,
    ensure_template,
    export_template,
    layer_keys,
)
from .server import ServerPart


def template_keys(
    settings: Settings, builder: Builder, server_major: int, *, extra_inputs: Sequence[str] = ()
) -> LayerKeys:
    """Both layer keys of the project, as a test run computes them (also used by ``nocrud build``).

    ``extra_inputs`` (the ``@template_setup`` source files) feed the data layer's key only.
    """
    schema_globs = (*(settings.template_inputs or builder.schema_inputs()), *builder.required_inputs())
    return layer_keys(settings.rootpath, schema_globs, builder, server_major, extra_inputs=extra_inputs)


def input_warnings(settings: Settings, keys: LayerKeys) -> list[str]:
    """Warnings about key inputs: a glob line that matches nothing, or no input at all."""
    configured = set(settings.template_inputs)  # a builder's default that matches nothing is no news
    lines = [
        f"warning: nocrud_template_inputs line {g!r} matches no file"
        for g in keys.unmatched_globs
        if g in configured
    ]
    if not keys.schema.files:
        lines.append(
            "warning: no file matches the template inputs, so the template will never rebuild when your "
            "schema changes: list the files your builder reads in nocrud_template_inputs"
        )
    return lines



class TemplatePart(ServerPart):
    """The finalized template this run's tests clone (rebuilt once if it vanishes mid-run)."""

    def builder(self) -> Builder:
        root = self.settings.rootpath
        spec = self.settings.builder
        if spec is None:
            if detect_django_project(root) is None:
                raise BuildError(
                    "no template builder configured. Set nocrud_builder in the ini file to one of:\n  "
                    + "\n  ".join(ACCEPTED_FORMS)
                )
            spec = "django"
        try:
            builder = parse_builder(
                spec,
                root=root,
                fixtures=self.settings.fixtures,
                sql_vars=dict(self.settings.sql_vars),
                incremental_command=self.settings.incremental_command,
            )
        except ValueError as exc:
            raise BuildError(f"nocrud_builder = {spec!r}: {exc}") from None
        app_env = self.settings.app_env
        builder.extra_env = lambda db: settings_env(db, app_env)  # the app's settings, for its tools too
        return builder

    def template(self) -> Template:
        return self.once("template", self._ensure_template)

    def layer_keys(self, server_major: int) -> LayerKeys:
        """Both layer keys of the project as a run computes them: the builder's inputs, and the
        ``@template_setup`` sources for the data layer (a setup change rebuilds that layer only)."""
        extra = setup_inputs(self.template_setups(), self.settings.rootpath)
        return template_keys(self.settings, self.builder(), server_major, extra_inputs=extra)

    def _ensure_template(self) -> Template:
        server = self.postgres()
        builder = self.builder()
        setups = self.template_setups()
        keys = self.layer_keys(server.major)
        for line in input_warnings(self.settings, keys):
            self.progress(line)
        use = self._cache.get("layers in use")
        if not isinstance(use, LayerUse):  # held for this process's life: GC never drops what we use
            use = self._cache["layers in use"] = LayerUse(server.admin)
        return ensure_template(TemplateRequest(
            server.admin,
            keys,
            builder,
            lock_dir=self.home / "locks",
            run_token=self.owner.token,
            rebuild=self.settings.rebuild,
            progress=self.progress,
            after_build=(lambda db: self._run_template_setups(setups, db)) if setups else None,
            use=use,
            require_objects=not self.settings.allow_empty_template,
            worker=self.worker,
            cache=self.template_cache if self.settings.template_cache else None,
        ))

    def template_cache(self, directory: Path | None = None) -> TemplateCache | None:
        """The template cache in ``directory`` (default: ``nocrud_template_cache``) with ``pg_dump`` and
        ``pg_restore`` of the server's major -- the embedded server's own, else found on this machine;
        None (said in one line) when this machine has none of that major."""
        directory = directory or self.settings.template_cache
        if directory is None:
            return None
        server = self.postgres()
        prefer = self.cluster.bindir if self.cluster is not None else None
        bindir = dump_bindir(server.major, prefer=prefer, explicit=self.settings.pg_bindir)
        if bindir is None:
            self.progress(
                f"pytest-nocrud: template cache {directory} skipped: no pg_dump/pg_restore of PostgreSQL "
                f"{server.major} on this machine (install its client, e.g. postgresql-client-{server.major}, "
                "or point nocrud_pg_bindir at it)"
            )
            return None
        return TemplateCache(directory, DumpTools(bindir, server.major))

    def export_template(self, directory: Path) -> Path:
        """``nocrud build --export DIR``: the finalized template's archive in ``directory``."""
        template = self.template()
        cache = self.template_cache(directory)
        if cache is None:
            raise BuildError(f"cannot export {template.name}: no pg_dump/pg_restore of this server's major")
        server = self.postgres()
        return export_template(
            server.admin, self.layer_keys(server.major), cache, progress=self.progress,
            restored_from=self.template_cache(),  # a restored template's schema layer is there
        )  # fmt: skip

    def _run_template_setups(self, setups: Sequence[SetupFunction], db: ConnInfo) -> None:
        """Build time: an app on the template being built (as a worker starts one), the setups, results."""
        self.progress(f"running {len(setups)} @template_setup function(s) against the app on {db.dbname} ...")
        log = self.app_log()
        offset = log.offset()
        app = AppProcess(self.app_spec(), db, log, registry=self._app_registry)
        app.start()
        try:
            results = run_setups(setups, app.url)
        except BuildError as exc:
            tail = indented(log.tail(offset, 15))
            app_log = f"\n  app log ({log.path}), last lines:\n{tail}" if tail else ""
            advice = "The template was not finalized; fix the function and run again."
            raise BuildError(f"{exc}{app_log}\n{advice}") from None
        finally:
            app.stop()  # its sessions end with it; ensure_template waits until none is left
        setup_store.save(db, results)
