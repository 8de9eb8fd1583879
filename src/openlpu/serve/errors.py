"""Errors in OpenAI's format, `{"error": {"message", "type", "code", "param"}}`, with Groq's status codes."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import JSONResponse

INVALID_REQUEST = "invalid_request_error"


class ApiError(Exception):
    """An answer other than success: the status, one sentence for the user, and OpenAI's type and code."""

    def __init__(self, status: int, message: str, *, type: str = INVALID_REQUEST, code: str | None = None,
                 param: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)
