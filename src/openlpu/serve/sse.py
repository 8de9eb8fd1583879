"""Server-sent events as the OpenAI and Groq APIs stream them: `data: {json}` lines, then `data: [DONE]`."""

from __future__ import annotations

import json

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}  # no proxy may hold tokens back


def event(data: dict) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
