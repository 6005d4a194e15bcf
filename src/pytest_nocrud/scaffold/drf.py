"""An OpenAPI-shaped description of a Django REST framework project's router viewsets.

For ``nocrud scaffold`` on Django projects that serve no schema: run inside the project (``manage.py
shell -c "from pytest_nocrud.scaffold.drf import dump; dump()"``), it walks the URLconf for viewset
routes (``callback.cls`` + ``callback.actions``), reads each create serializer's writable fields and
prints a minimal OpenAPI document: paths, request bodies with required fields, types, choices,
bounds, and ``x-nocrud-resource`` on related-object fields naming the endpoint of the related model.
Django and DRF are imported only here, only when this runs.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Iterator
from typing import Any

_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def _route(fragment: str) -> str:
    """``^universes/(?P<pk>[^/.]+)/$`` -> ``universes/{pk}/``."""
    text = _NAMED_GROUP.sub(lambda m: "{" + m.group(1) + "}", fragment)
    return text.replace("^", "").replace("$", "").replace("\\Z", "").replace("\\", "")


def _routes(patterns: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for pattern in patterns:
        here = prefix + _route(str(pattern.pattern))
        if hasattr(pattern, "url_patterns"):
            yield from _routes(pattern.url_patterns, here)
        elif "format" not in here:
            yield "/" + here, pattern.callback


def _field_schema(field: Any, endpoints: dict[Any, str]) -> dict[str, Any]:
    serializers = importlib.import_module("rest_framework.serializers")
    relations = importlib.import_module("rest_framework.relations")
    kind = type(field).__name__
    schema: dict[str, Any] = {}
    if isinstance(field, relations.ManyRelatedField):
        schema = {"type": "array", "items": _field_schema(field.child_relation, endpoints)}
        target = schema["items"].get("x-nocrud-resource")
        if target:
            schema["x-nocrud-resource"] = target
        return schema
    if isinstance(field, relations.RelatedField):
        model = getattr(getattr(field, "queryset", None), "model", None)
        schema = {"type": "integer"}
        if model in endpoints:
            schema["x-nocrud-resource"] = endpoints[model]
        return schema
    if isinstance(field, serializers.ChoiceField):
        return {"type": "string", "enum": list(field.choices)}
    if isinstance(field, serializers.BooleanField):
        schema = {"type": "boolean"}
    elif isinstance(field, serializers.IntegerField):
        schema = {"type": "integer"}
    elif isinstance(field, (serializers.FloatField, serializers.DecimalField)):
        schema = {"type": "number"}
    elif isinstance(field, serializers.DateTimeField):
        schema = {"type": "string", "format": "date-time"}
    elif isinstance(field, serializers.DateField):
        schema = {"type": "string", "format": "date"}
    elif isinstance(field, serializers.EmailField):
        schema = {"type": "string", "format": "email"}
    elif isinstance(field, serializers.URLField):
        schema = {"type": "string", "format": "uri"}
    elif isinstance(field, (serializers.ListField, serializers.MultipleChoiceField)):
        schema = {"type": "array"}
    elif isinstance(field, (serializers.DictField, serializers.JSONField)):
        schema = {"type": "object"}
    else:
        schema = {"type": "string", "x-drf-field": kind}
    for attr, key in (("max_length", "maxLength"), ("min_value", "minimum"), ("max_value", "maximum")):
        value = getattr(field, attr, None)
        if value is not None:
            schema[key] = value
    return schema


def describe() -> dict[str, Any]:
    """The document (see the module docstring); needs configured Django settings."""
    urls = importlib.import_module("django.urls")
    fields_module = importlib.import_module("rest_framework.fields")
    routes = list(_routes(urls.get_resolver().url_patterns))
    endpoints: dict[Any, str] = {}
    for path, callback in routes:
        viewset = getattr(callback, "cls", None)
        actions = getattr(callback, "actions", None) or {}
        queryset = getattr(viewset, "queryset", None)
        if "{" not in path and actions.get("post") == "create" and queryset is not None:
            endpoints.setdefault(queryset.model, path)
    paths: dict[str, Any] = {}
    for path, callback in routes:
        actions = getattr(callback, "actions", None)
        viewset = getattr(callback, "cls", None)
        if not actions or viewset is None:
            continue
        ops: dict[str, Any] = {method: {"responses": {}} for method in actions}
        serializer_class = getattr(viewset, "serializer_class", None)
        if "post" in ops and serializer_class is not None:
            serializer = serializer_class()
            properties: dict[str, Any] = {}
            required: list[str] = []
            for name, field in serializer.fields.items():
                if field.read_only:
                    continue
                properties[name] = _field_schema(field, endpoints)
                if field.default is not fields_module.empty and not callable(field.default):
                    properties[name]["default"] = field.default
                if field.required:
                    required.append(name)
            body = {"type": "object", "properties": properties, "required": required}
            ops["post"]["requestBody"] = {"content": {"application/json": {"schema": body}}}
        paths[path] = ops
    # DRF writes usually need a login; the scaffold turns this into its TODO auth line.
    schemes = {"DjangoSession": {"type": "apiKey", "in": "cookie", "name": "sessionid"}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "the Django REST framework API"},
        "paths": paths,
        "components": {"securitySchemes": schemes},
    }


def dump() -> None:
    """Print :func:`describe` as JSON on one line (what the scaffold reads back)."""
    sys.stdout.write("NOCRUD-SCHEMA " + json.dumps(describe(), default=str) + "\n")
