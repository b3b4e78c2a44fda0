"""The OpenAPI document of the admin API, served at ``/_admin/openapi.json``."""

from __future__ import annotations

from typing import Any

from host.gateway.secrets_api import SECRETS_OPENAPI

_ERROR = {"$ref": "#/components/schemas/Error"}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}


def _resp(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    return out


_ERRORS = {
    "401": _resp("no bearer token", _ERROR),
    "403": _resp("wrong bearer token", _ERROR),
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Nimbus admin API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "kind": {"type": "string"},
                            "message": {"type": "string"},
                            "request_id": {"type": "string"},
                        },
                    }
                },
            },
            "Deployment": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "integer"},
                    "sha256": {"type": "string"},
                    "deployed_ms": {"type": "integer"},
                    "config": {"type": "object"},
                    "routes": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/_admin/health": {
            "get": {"summary": "Liveness", "security": [], "responses": {"200": _resp("ok")}}
        },
        "/_admin/ready": {
            "get": {
                "summary": "Readiness: the server's start-up work is done",
                "security": [],
                "responses": {"200": _resp("ready"), "503": _resp("still starting")},
            }
        },
        "/_admin/functions": {
            "get": {
                "summary": "List deployed functions with their versions and routes",
                "responses": {"200": _resp("the functions"), **_ERRORS},
            }
        },
        "/_admin/functions/{name}": {
            "parameters": [_NAME],
            "get": {
                "summary": "One function",
                "responses": {
                    "200": _resp("the deployment", {"$ref": "#/components/schemas/Deployment"}),
                    "404": _resp("not deployed", _ERROR),
                    **_ERRORS,
                },
            },
            "put": {
                "summary": "Deploy a module (validated and compiled before it serves)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["module"],
                                "properties": {
                                    "module": {"type": "string", "format": "binary"},
                                    "config": {
                                        "type": "string",
                                        "description": "JSON: the keys of [functions.NAME]",
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _resp("deployed", {"$ref": "#/components/schemas/Deployment"}),
                    "400": _resp("module or config refused", _ERROR),
                    **_ERRORS,
                },
            },
            "delete": {
                "summary": "Remove a function",
                "responses": {"204": _resp("removed"), "404": _resp("not deployed"), **_ERRORS},
            },
        },
        "/_admin/functions/{name}/invoke": {
            "parameters": [_NAME],
            "post": {
                "summary": "Invoke a function directly with a JSON input (or a full event)",
                "requestBody": {"content": {"application/json": {"schema": {}}}},
                "responses": {
                    "200": _resp("the response, logs and timing"),
                    "404": _resp("not deployed", _ERROR),
                    "502": _resp("the function failed", _ERROR),
                    "504": _resp("the function timed out", _ERROR),
                    **_ERRORS,
                },
            },
        },
        "/_admin/routes": {
            "get": {"summary": "The HTTP routes", "responses": {"200": _resp("routes")}},
            "put": {
                "summary": "Replace the HTTP routes",
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {"200": _resp("routes"), "400": _resp("refused", _ERROR)},
            },
        },
        "/_admin/keys": {
            "get": {
                "summary": "Gateway API keys (never their secrets)",
                "responses": {"200": _resp("keys")},
            },
            "post": {
                "summary": "Create an API key {name, expires?, policies?, routes?}; shown once",
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {
                    "201": _resp("the key and its text"),
                    "400": _resp("refused", _ERROR),
                },
            },
        },
        "/_admin/keys/{key_id}": {
            "delete": {
                "summary": "Revoke an API key",
                "responses": {"200": _resp("the revoked key"), "404": _resp("unknown", _ERROR)},
            }
        },
        "/_admin/invocations": {
            "get": {
                "summary": "Recent invocation records",
                "parameters": [
                    {"name": "function", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                ],
                "responses": {"200": _resp("records")},
            }
        },
        "/_admin/logs/stream": {
            "get": {
                "summary": "Invocations and their log lines as they come (server-sent events)",
                "parameters": [
                    {"name": "function", "in": "query", "schema": {"type": "string"}},
                    {"name": "request_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "outcome", "in": "query", "schema": {"type": "string"}},
                    {"name": "after", "in": "query", "schema": {"type": "integer"}},
                ],
                "responses": {"200": _resp("text/event-stream: one `invocation` event each")},
            }
        },
    },
}

OPENAPI["paths"].update(SECRETS_OPENAPI)
