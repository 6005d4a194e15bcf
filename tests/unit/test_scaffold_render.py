"""Unit tests of the scaffold's schema -> CrudFlow source translation (no app: a literal schema)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_nocrud import CrudFlow, UsageError
from pytest_nocrud.scaffold.render import render, resources_from_openapi


def _op(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"responses": {}}
    if schema is not None:
        op["requestBody"] = {"content": {"application/json": {"schema": schema}}}
    return op


DOC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Shop"},
    "paths": {
        "/api/categories/": {"get": _op(), "post": _op({"$ref": "#/components/schemas/Category"})},
        "/api/categories/{pk}/": {"get": _op(), "put": _op(), "delete": _op()},
        "/api/products": {"get": _op(), "post": _op({"$ref": "#/components/schemas/Product"})},
        "/api/products/{product_id}": {"get": _op(), "patch": _op()},
        "/api/health": {"get": _op()},
        "/api/login": {"post": _op()},
    },
    "components": {
        "securitySchemes": {
            "OAuth2": {"type": "oauth2", "flows": {"password": {"tokenUrl": "auth/token", "scopes": {}}}}
        },
        "schemas": {
            "Category": {
                "type": "object",
                "required": ["title", "slug"],
                "properties": {
                    "title": {"type": "string", "maxLength": 12},
                    "slug": {"type": "string", "pattern": "^[a-z]+$", "example": "shoes"},
                    "note": {"type": "string"},
                },
            },
            "Product": {
                "allOf": [
                    {"$ref": "#/components/schemas/Named"},
                    {
                        "type": "object",
                        "required": ["category_id", "price", "kind", "released", "contact", "tag_ids"],
                        "properties": {
                            "category_id": {"type": "integer"},
                            "price": {"type": "number", "minimum": 0, "exclusiveMinimum": 0},
                            "kind": {
                                "anyOf": [{"type": "null"}, {"enum": ["new", "used"], "type": "string"}]
                            },
                            "released": {"type": "string", "format": "date"},
                            "contact": {"type": "string", "format": "email"},
                            "tag_ids": {"type": "array", "items": {"type": "integer"}},
                            "stock": {"type": "integer", "minimum": 5, "maximum": 9},
                        },
                    },
                ]
            },
            "Named": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
        },
    },
}


def test_collections_payloads_references_and_item_paths() -> None:
    category, product = resources_from_openapi(DOC)
    assert (category.name, category.endpoint, category.item_path) == (
        "category",
        "/api/categories/",
        "/api/categories/{id}/",
    )
    assert category.create == {"title": "category-tit", "slug": "shoes"}  # cut to maxLength 12
    assert (category.method, category.update) == ("PUT", {"title": "category-ti2"})  # still 12 chars
    assert product.item_path == "/api/products/{id}"
    assert product.requires == {"category_id": "category"}
    assert product.create == {
        "name": "product-name",
        "price": 1.0,
        "kind": "new",
        "released": "2024-01-15",
        "contact": "product@example.com",
        "tag_ids": [],
    }
    assert product.update == {"name": "product-name-2"}
    assert not product.deletes


def test_the_rendered_module_is_valid_python_that_declares_the_flows() -> None:
    source = render(resources_from_openapi(DOC), document=DOC, source="/openapi.json")
    assert '#   AS_USER = AsToken("username", "password", path="/auth/token")' in source
    assert "detail_path=" not in source.split("CATEGORY = ")[1].split(")")[0]  # guessable: not written
    assert 'steps=["create", "read", "list", "update"]' in source  # products cannot be deleted
    namespace: dict[str, Any] = {}
    exec(compile(source, "test_crud_scaffold.py", "exec"), namespace)  # noqa: S102 - our own output
    assert isinstance(namespace["PRODUCT"], CrudFlow)
    assert [s.name for s in namespace["PRODUCT"].flow.order()][:2] == ["category.create", "create"]
    assert callable(namespace["test_category_crud"])


def test_a_schema_without_paths_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="no paths"):
        resources_from_openapi({"openapi": "3.0.0"})
