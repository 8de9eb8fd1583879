"""The Chat Completions request: parsed, checked and turned into what the engine needs.

Fields the service does not use (`frequency_penalty`, `user`, `tools`, ...) are ignored, as the issue and
OpenAI-compatible servers do. Every problem becomes an `ApiError` in OpenAI's format naming the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from openlpu.errors import UserError
from openlpu.runtime.engine import Engine
from openlpu.runtime.sampling import SamplingParams
from openlpu.serve.errors import ApiError


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    type: str
    text: str | None = None


class Message(_Lenient):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart] | None = None

    def text(self, index: int) -> str:
        if isinstance(self.content, str):
            return self.content
        if self.content is None:
            raise ApiError(400, f"messages[{index}] has no content; give each message a 'content' string",
                           param=f"messages.{index}.content")
        if any(part.type != "text" or part.text is None for part in self.content):
            raise ApiError(400, f"messages[{index}] has a content part that is not text; this model reads text only",
                           param=f"messages.{index}.content")
        return "".join(part.text for part in self.content)


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    model: str
    messages: list[Message]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None


@dataclass(frozen=True)
class ChatRequest:
    """A request the engine can run: its prompt ids and sampling, and how to answer."""

    prompt: list[int]
    params: SamplingParams
    stream: bool
    include_usage: bool


def parse_json(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(400, f"the request body is not valid JSON ({err}); send a JSON object",
                       code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body is a JSON {type(data).__name__}, not an object; send a JSON object",
                       code="invalid_json")
    return data


def parse_chat_request(data: dict, engine: Engine) -> ChatRequest:
    try:
        req = ChatCompletionRequest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ApiError(400, f"'{where}': {first['msg']}; fix this field of the request", param=where) from None
    if req.model not in (engine.model_id, *engine.aliases):
        raise ApiError(404, f"The model `{req.model}` does not exist or you do not have access to it; this server "
                            f"serves `{engine.model_id}`", code="model_not_found", param="model")
    if not req.messages:
        raise ApiError(400, "'messages' is empty; send at least one message", param="messages")
    if req.n is not None and req.n != 1:
        raise ApiError(400, f"'n' is {req.n}, but only n = 1 is supported (as on Groq); leave n out or set it to 1",
                       param="n")
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    try:
        params = SamplingParams(
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            seed=req.seed,
            max_tokens=req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens,
            stop=stop,
        )
        prompt = engine.prompt_ids([{"role": m.role, "content": m.text(i)} for i, m in enumerate(req.messages)])
    except UserError as err:
        raise ApiError(400, str(err)) from None
    wanted = params.max_tokens or 1
    if len(prompt) + wanted > engine.context_length:
        raise ApiError(400, f"{len(prompt)} prompt tokens plus {wanted} completion tokens exceed the context length "
                            f"of {engine.context_length}; reduce the length of the messages or completion",
                       code="context_length_exceeded", param="messages")
    include_usage = bool(req.stream and req.stream_options and req.stream_options.include_usage)
    return ChatRequest(prompt, params, req.stream, include_usage)
