"""fieldnotes: a small Flask JSON API (projects, notes, tags) on plain SQL and psycopg 3.

``flask --app fieldnotes run`` finds :func:`create_app`. The only setting is ``DATABASE_URL``.
"""

from __future__ import annotations

from typing import Any

import psycopg
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from . import db
from .api import api

# The schema's UNIQUE constraints (PostgreSQL's default names) and the field each one guards.
UNIQUE_FIELDS = {"projects_name_key": "name", "tags_name_key": "name"}


def create_app() -> Flask:
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # fields in the order the API lists them
    db.init_app(app)
    app.register_blueprint(api)

    @app.get("/health")
    def health() -> Response:
        """The ready path: answers only once the database does (no token needed)."""
        db.query("SELECT 1")
        return jsonify(status="ok")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        """Every error is JSON: ``{"error": "..."}`` (plus ``fields`` for validation errors), with the
        exception's status and headers (``WWW-Authenticate`` on a 401)."""
        body: dict[str, Any] = {"error": exc.description}
        fields = getattr(exc, "fields", None)
        if fields:
            body["fields"] = fields
        response = exc.get_response()
        response.set_data(jsonify(body).get_data())
        response.content_type = "application/json"
        return response

    @app.errorhandler(psycopg.errors.UniqueViolation)
    def conflict(exc: psycopg.errors.UniqueViolation) -> tuple[Any, int]:
        """A UNIQUE constraint said no: 409, naming the field (the transaction is rolled back)."""
        field = UNIQUE_FIELDS.get(exc.diag.constraint_name or "", "unknown")
        return jsonify(error="already exists", fields={field: "already taken"}), 409

    return app
