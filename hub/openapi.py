"""The OpenAPI 3.1 document of the hub's HTTP API (hub/api.py), served at
``/v1/openapi.json`` and kept in docs/openapi.json (``python -m hub.openapi >
docs/openapi.json`` writes it; a test keeps the two the same, and schemathesis checks the
running hub against it).

Written as data here rather than generated from the handlers, so that it says what the
API promises (statuses, error codes, who sees what), and a change of behaviour has to
change it too.
"""

from __future__ import annotations

from typing import Any

from protocol.frames import PROTOCOL_VERSION

_ID = {"type": "string", "minLength": 1, "maxLength": 64}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    what = {400: "The request body is not an acceptable credential (code: malformed_frame, "
                 "bad_credential, unknown_authority, expired_credential, ...).",
            401: "Not signed, or the signature, its time or the caller's credential does "
                 "not verify (code: unauthenticated, bad_credential, bad_signature, "
                 "stale_request, unknown_unit, unknown_authority, expired_credential).",
            403: "The caller is not a registrar (code: forbidden).",
            404: "Not there, or not visible to the caller (code: unknown_operation, "
                 "unknown_unit, not_found).",
            405: "Method not allowed.",
            413: "The body is larger than 1 MiB (code: frame_too_large)."}
    return {str(s): _json(_ref("Error"), what[s]) for s in statuses}


_UNIT = {
    "type": "object",
    "description": "A directory entry: the credential's public facts, and the exact signed "
                   "bytes (only those count; the rest is for people).",
    "required": ["unit", "country", "agency", "role", "identity_key", "fingerprint",
                 "issued_at", "expires_at", "authority", "credential", "signature"],
    "properties": {
        "unit": _ID, "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "agency": {"type": "string"},
        "role": {"enum": ["unit", "ocu", "liaison", "observer"]},
        "identity_key": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "fingerprint": {"type": "string"},
        "issued_at": {"type": "integer"}, "expires_at": {"type": "integer"},
        "authority": {"type": "string", "pattern": "^[0-9a-f]+$"},
        "credential": {"type": "string", "contentEncoding": "base64"},
        "signature": {"type": "string", "contentEncoding": "base64"},
    },
}

_OPERATION = {
    "type": "object",
    "required": ["op", "name", "admin", "epoch", "members", "head", "subscribers"],
    "properties": {
        "op": _ID, "name": {"type": "string"}, "admin": _ID,
        "epoch": {"type": "integer", "minimum": 0},
        "members": {"type": "array", "items": _ID},
        "head": {"type": "integer", "minimum": 0, "description": "seq of the last entry"},
        "subscribers": {"type": "integer", "minimum": 0,
                        "description": "subscriptions on this hub node"},
    },
}

_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string", "description": "stable; switch on it"},
                       "message": {"type": "string", "description": "names the problem"}}}},
}

_ENROLL = {
    "type": "object", "required": ["credential", "signature"],
    "description": "An authority-signed credential, as a directory entry carries it (other "
                   "fields are ignored).",
    "properties": {"credential": {"type": "string", "contentEncoding": "base64"},
                   "signature": {"type": "string", "contentEncoding": "base64"}},
}

_SIGNED: list[dict[str, list[str]]] = [{"signedRequest": []}]


def document() -> dict[str, Any]:
    """The document (a new dict each call: callers may change theirs)."""
    op_param = {"name": "op", "in": "path", "required": True, "schema": _ID}
    unit_param = {"name": "unit", "in": "path", "required": True, "schema": _ID}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "opshub hub HTTP API", "version": str(PROTOCOL_VERSION),
            "description": "Metadata about operations and the directory of units; never a "
                           "message. Agents talk to the hub over the WebSocket at /v1/ws "
                           "(docs/protocol.md). /healthz and /metrics are served on a "
                           "separate listener (docs/operations.md).",
        },
        "paths": {
            "/v1/operations": {"get": {
                "summary": "The operations the caller belongs to (a registrar: all).",
                "operationId": "listOperations", "security": _SIGNED,
                "responses": {"200": _json({"type": "object", "required": ["operations"],
                                            "properties": {"operations": {
                                                "type": "array", "items": _ref("Operation")}}},
                                           "Operations, sorted by id."),
                              **_errors(401)}}},
            "/v1/operations/{op}": {"get": {
                "summary": "One operation the caller belongs to (a registrar: any).",
                "operationId": "getOperation", "security": _SIGNED, "parameters": [op_param],
                "responses": {"200": _json(_ref("Operation"), "The operation."),
                              **_errors(401, 404)}}},
            "/v1/directory": {
                "get": {
                    "summary": "The directory entries the caller may see: its own and those "
                               "of its operations' units (a registrar: all).",
                    "operationId": "listUnits", "security": _SIGNED,
                    "responses": {"200": _json({"type": "object", "required": ["units"],
                                                "properties": {"units": {
                                                    "type": "array", "items": _ref("Unit")}}},
                                               "Units, sorted by id."),
                                  **_errors(401)}},
                "post": {
                    "summary": "Enroll an authority-signed credential (registrars only); "
                               "enrolling one the hub has is a no-op.",
                    "operationId": "enroll", "security": _SIGNED,
                    "requestBody": {"required": True, "content": {
                        "application/json": {"schema": _ref("Enrollment")}}},
                    "responses": {"201": _json(_ref("Unit"), "The unit's entry now on file."),
                                  **_errors(400, 401, 403, 413)}}},
            "/v1/directory/{unit}": {"get": {
                "summary": "One directory entry the caller may see.",
                "operationId": "getUnit", "security": _SIGNED, "parameters": [unit_param],
                "responses": {"200": _json(_ref("Unit"), "The unit's entry."),
                              **_errors(401, 404)}}},
            "/v1/openapi.json": {"get": {
                "summary": "This document.", "operationId": "openapi", "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")}}},
        },
        "components": {
            "schemas": {"Unit": _UNIT, "Operation": _OPERATION, "Error": _ERROR,
                        "Enrollment": _ENROLL},
            "securitySchemes": {"signedRequest": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "Authorization: Opshub-Ed25519 unit=\"U\", time=\"T\", "
                               "signature=\"S\": S is the unit's Ed25519 signature over "
                               "protocol/http_auth.py signing_input (method, path and query, "
                               "T in unix seconds, SHA-256 of the body); see docs/protocol.md "
                               "17. A unit the hub has not enrolled adds Opshub-Credential: "
                               "its base64 credential '.' base64 authority signature."}},
        },
    }


if __name__ == "__main__":
    import json

    print(json.dumps(document(), indent=2))
