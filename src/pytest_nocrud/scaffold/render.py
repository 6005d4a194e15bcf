"""``nocrud scaffold``: a first CRUD flow file written from the app's OpenAPI schema.

A collection resource is a path without parameters that answers GET and POST and has an item path
(``/authors`` + ``/authors/{author_id}``) that answers GET. For each one this writes a ``CrudFlow``:

* ``create`` -- the POST body's *required* fields, each from the schema's ``example``/``examples``,
  ``enum`` (first value), ``default``, ``format`` (date, email, uuid, ...) or type, within its bounds;
* ``update`` -- one of those fields changed (PATCH if the item path has it, else PUT);
* ``requires`` -- a required field named after another resource (``author_id``, ``author``; a list for
  ``tag_ids``), or marked ``x-nocrud-resource`` (Django REST framework projects without a schema, see
  ``drf_schema``), gets that resource's CrudFlow, declared first;
* ``detail_path`` -- only where the item path is not what CrudFlow would guess;
* auth -- a marked TODO: one ``AS_USER`` line the user fills in.

This module only turns a schema into source text; starting the app and fetching the schema is the
``fetch.read_schema``, and the ``nocrud`` command glues the two.
"""

from __future__ import annotations

import dataclasses
import json
import keyword
import re
from collections.abc import Mapping
from typing import Any

from ..errors import UsageError

__all__ = ["Resource", "render", "resources_from_openapi"]

_PARAM = re.compile(r"\{[^}/]+\}")
_FORMATS: dict[str, Any] = {
    "date": "2024-01-15",
    "date-time": "2024-01-15T12:00:00Z",
    "time": "12:00:00",
    "uuid": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
    "ipv4": "192.0.2.10",
    "ipv6": "2001:db8::10",
}


@dataclasses.dataclass
class Resource:
    """One collection resource, ready to be written as a CrudFlow."""

    name: str  # singular, a Python identifier: "author"
    endpoint: str  # "/authors"
    item_path: str  # "/authors/{id}"
    create: dict[str, Any]
    update: dict[str, Any] | None
    method: str  # "PATCH" or "PUT"
    deletes: bool
    requires: dict[str, str | list[str]]  # field -> resource name (or [name] for a list of ids)

    @property
    def constant(self) -> str:
        return self.name.upper()

    def guessed_item_path(self) -> str:
        return f"{self.endpoint}{{id}}/" if self.endpoint.endswith("/") else f"{self.endpoint}/{{id}}"


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 3:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _identifier(text: str) -> str:
    ident = re.sub(r"\W+", "_", text).strip("_").lower() or "resource"
    if ident[0].isdigit() or keyword.iskeyword(ident):
        ident = f"r_{ident}"
    return ident


class _Schemas:
    """``$ref`` resolution and the small subset of JSON Schema that payloads need."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document

    def resolve(self, schema: Any) -> dict[str, Any]:
        seen = 0
        while isinstance(schema, Mapping) and "$ref" in schema and seen < 20:
            ref = str(schema["$ref"])
            if not ref.startswith("#/"):
                return {}
            node: Any = self.document
            for part in ref[2:].split("/"):
                node = (
                    node.get(part.replace("~1", "/").replace("~0", "~"), {})
                    if isinstance(node, Mapping)
                    else {}
                )
            schema, seen = node, seen + 1
        if not isinstance(schema, Mapping):
            return {}
        if "allOf" in schema:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                sub = self.resolve(part)
                merged.setdefault("properties", {}).update(sub.get("properties", {}))
                merged["required"] = [*merged.get("required", []), *sub.get("required", [])]
                for key, value in sub.items():
                    merged.setdefault(key, value)
            return merged
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self.resolve(s) for s in schema[key]]
                chosen = next((o for o in options if o.get("type") != "null"), {})
                return {**{k: v for k, v in schema.items() if k != key}, **chosen}
        return dict(schema)

    def body_of(self, operation: Mapping[str, Any]) -> dict[str, Any]:
        content = operation.get("requestBody", {})
        content = self.resolve(content).get("content", {}) if isinstance(content, Mapping) else {}
        for media, spec in content.items():
            if "json" in media:
                return self.resolve(spec.get("schema", {}))
        return {}


def _sample(name: str, schema: Mapping[str, Any], label: str) -> Any:
    """A value the schema accepts, preferring what the schema itself suggests."""
    if "example" in schema:
        return schema["example"]
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return examples[0]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "integer" or kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value: float = (
            1 if low is None else low + (1 if "exclusiveMinimum" in schema and low is not None else 0)
        )
        high = schema.get("maximum")
        if high is not None and value > high:
            value = high
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    fmt = schema.get("format")
    if fmt in _FORMATS:
        return _FORMATS[fmt]
    if fmt == "email":
        return f"{label}@example.com"
    if fmt in ("uri", "url"):
        return f"https://example.com/{label}"
    text = f"{label}-{name}".replace("_", "-")  # no spaces: usernames and slugs accept it too
    limit = schema.get("maxLength")
    return text[: int(limit)] if isinstance(limit, int) else text


def _changed(value: Any, schema: Mapping[str, Any]) -> Any:
    """Another valid value for the update, or ``None`` when no safe one is known."""
    enum = schema.get("enum")
    if isinstance(enum, list):
        others = [v for v in enum if v != value]
        return others[0] if others else None
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        high = schema.get("maximum")
        bumped = value + 1
        return bumped if high is None or bumped <= high else None
    if isinstance(value, str) and not schema.get("format") and not schema.get("pattern"):
        text = f"{value}-2"
        limit = schema.get("maxLength")
        if isinstance(limit, int) and len(text) > limit:  # keep the length, change the last character
            text = value[: limit - 1] + ("2" if not value.endswith("2") else "3") if limit > 0 else ""
        return text or None
    return None


def _reference(field: str, names: Mapping[str, str]) -> tuple[str, bool] | None:
    """``(resource, is_list)`` when ``field`` names another resource: author_id, author, tag_ids."""
    base = field.lower()
    for suffix, many in (("_ids", True), ("_id", False), ("_pks", True), ("_pk", False)):
        if base.endswith(suffix) and base[: -len(suffix)] in names:
            return names[base[: -len(suffix)]], many
    if base in names:
        return names[base], False
    if base.endswith("s") and _singular(base) in names:
        return names[_singular(base)], True
    return None


def resources_from_openapi(document: Mapping[str, Any]) -> list[Resource]:
    """Every collection resource of an OpenAPI 3 document, prerequisites before the resources using them."""
    paths = document.get("paths")
    if not isinstance(paths, Mapping) or not paths:
        raise UsageError("the OpenAPI schema has no paths")
    schemas = _Schemas(document)
    found: list[tuple[str, str, Mapping[str, Any], Mapping[str, Any]]] = []
    for path, ops in paths.items():
        if "{" in path or not isinstance(ops, Mapping) or "post" not in ops or "get" not in ops:
            continue
        stem = path.rstrip("/")
        items = [
            p
            for p, item_ops in paths.items()
            if isinstance(item_ops, Mapping)
            and "get" in item_ops
            and p.startswith(stem + "/{")
            and _PARAM.fullmatch(p[len(stem) + 1 :].rstrip("/"))
        ]
        if items:
            found.append((path, items[0], ops, paths[items[0]]))
    names: dict[str, str] = {}
    for path, *_ in found:
        word = _singular(path.rstrip("/").rsplit("/", 1)[-1] or "resource")
        name = _identifier(word)
        while name in names.values():
            name += "_2"
        names[word.replace("-", "_").lower()] = name
    by_endpoint = {path: name for (path, *_), name in zip(found, names.values(), strict=True)}
    resources: list[Resource] = []
    for (path, item, ops, item_ops), name in zip(found, names.values(), strict=True):
        body = schemas.body_of(ops["post"])
        props = {k: schemas.resolve(v) for k, v in body.get("properties", {}).items()}
        create: dict[str, Any] = {}
        requires: dict[str, str | list[str]] = {}
        for field in body.get("required", []):
            prop = props.get(field, {})
            target = by_endpoint.get(prop.get("x-nocrud-resource", ""))  # drf_schema names it
            if target is not None and target != name:
                requires[field] = [target] if prop.get("type") == "array" else target
                continue
            ref = _reference(field, {k: v for k, v in names.items() if v != name})
            if ref is not None:
                requires[field] = [ref[0]] if ref[1] else ref[0]
            elif field in props:
                create[field] = _sample(field, props[field], name)
        update = None
        method = "PATCH" if "patch" in item_ops else "PUT"
        if "patch" in item_ops or "put" in item_ops:
            for field, value in create.items():
                new = _changed(value, props.get(field, {}))
                if new is not None:
                    update = {field: new}
                    break
        resources.append(
            Resource(
                name=name,
                endpoint=path,
                item_path=_PARAM.sub("{id}", item),
                create=create,
                update=update,
                method=method,
                deletes="delete" in item_ops,
                requires=requires,
            )
        )
    return _prerequisites_first(resources)


def _prerequisites_first(resources: list[Resource]) -> list[Resource]:
    by_name = {r.name: r for r in resources}
    ordered: list[Resource] = []
    visiting: set[str] = set()

    def visit(resource: Resource) -> None:
        if resource in ordered:
            return
        visiting.add(resource.name)
        for field, target in list(resource.requires.items()):
            wanted = target[0] if isinstance(target, list) else target
            if wanted in visiting:  # a cycle: leave this reference for the user
                del resource.requires[field]
                resource.create[field] = None
                continue
            visit(by_name[wanted])
        visiting.discard(resource.name)
        ordered.append(resource)

    for resource in resources:
        visit(resource)
    return ordered


def _literal(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _auth_hint(document: Mapping[str, Any]) -> list[str] | None:
    """The TODO lines for the login, or None when the schema declares no security."""
    components = document.get("components", {})
    schemes = components.get("securitySchemes", {}) if isinstance(components, Mapping) else {}
    if not schemes:
        return None
    lines = ["# TODO auth: the API declares " + ", ".join(sorted(schemes)) + ". Log the flows in, e.g."]
    for scheme in schemes.values():
        flows = scheme.get("flows", {}) if isinstance(scheme, Mapping) else {}
        token_url = flows.get("password", {}).get("tokenUrl") if isinstance(flows, Mapping) else None
        if token_url:
            path = token_url if token_url.startswith("/") else "/" + token_url
            lines.append(
                f'#   AS_USER = AsToken("username", "password", path="{path}")  # OAuth2 password flow'
            )
    paths = document.get("paths", {})
    if "/token" in paths and not any("AsToken" in line for line in lines):
        lines.append('#   AS_USER = AsToken("username", "password")  # POST /token, OAuth2 password flow')
    session = '#   AS_USER = AsUser("username", "password")  # Django session + CSRF'
    cookie = any(isinstance(s, Mapping) and s.get("in") == "cookie" for s in schemes.values())
    if cookie:  # a session API: the session login first
        lines.insert(1, session)
    else:
        lines.append(session)
    lines.append('#   AS_USER = AsBearer("a-token")  # a token you already have')
    return lines


def render(resources: list[Resource], *, document: Mapping[str, Any], source: str) -> str:
    """The test module's source text."""
    title = (
        document.get("info", {}).get("title", "the API")
        if isinstance(document.get("info"), Mapping)
        else "the API"
    )
    auth = _auth_hint(document)
    out = [
        f'"""CRUD flows for {title}, scaffolded by `nocrud scaffold` from {source}.',
        "",
        "One CrudFlow per collection resource. The payloads come from the schema's required fields:",
        "review them (unique fields, values your app rejects), then run `pytest -k crud`.",
        '"""',
        "",
        "from pytest_nocrud import AsBearer, AsToken, AsUser, CrudFlow  # noqa: F401",
        "",
    ]
    if auth:
        out += [*auth, "AS_USER = None", ""]
    else:
        out += ["AS_USER = None  # the schema declares no security; set a login here if writes need one", ""]
    if not resources:
        out += ["# No collection resources found (a path with GET + POST and an item path with GET).", ""]
    for resource in resources:
        args = [f'    "{resource.name}",', f'    endpoint="{resource.endpoint}",']
        if resource.item_path != resource.guessed_item_path():
            args.append(f'    detail_path="{resource.item_path}",')
        args.append(f"    create={_literal(resource.create)},")
        if resource.update is not None:
            args.append(f"    update={_literal(resource.update)},")
            if resource.method != "PATCH":
                args.append(f'    method="{resource.method}",')
        if resource.requires:
            reqs = ", ".join(
                f"{json.dumps(field)}: "
                + (f"[{target[0].upper()}]" if isinstance(target, list) else target.upper())
                for field, target in resource.requires.items()
            )
            args.append(f"    requires={{{reqs}}},")
        if not resource.deletes:
            args.append('    steps=["create", "read", "list", "update"],')
        args.append("    as_user=AS_USER,")
        out += [
            f"{resource.constant} = CrudFlow(",
            *args,
            ")",
            f"test_{resource.name}_crud = {resource.constant}.as_test()",
            "",
        ]
    return "\n".join(out).rstrip() + "\n"
