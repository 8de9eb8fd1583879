"""The API routes, mounted under both /openai/v1 (Groq's path) and /v1 (OpenAI's)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from openlpu.errors import UserError
from openlpu.serve import sse
from openlpu.serve.completions import Completion, provenance
from openlpu.serve.errors import ApiError
from openlpu.serve.scheduler import Overloaded, Ticket
from openlpu.serve.schemas import parse_chat_request, parse_json

router = APIRouter()


def _service(request: Request):
    return request.app.state.service


def _authorize(request: Request) -> None:
    key = _service(request).api_key
    if key is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
        raise ApiError(401, "Invalid API Key; send the key the server was started with as 'Authorization: Bearer KEY'",
                       code="invalid_api_key")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    too_big = ApiError(413, f"the request body is larger than {limit} bytes; send a shorter conversation",
                       code="request_too_large")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    return bytes(body)


def _model_card(service) -> dict:
    engine = service.engine
    return {"id": engine.model_id, "object": "model", "created": service.created, "owned_by": "openlpu",
            "active": True, "context_window": engine.context_length}


@router.get("/models")
async def list_models(request: Request) -> dict:
    _authorize(request)
    return {"object": "list", "data": [_model_card(_service(request))]}


@router.get("/models/{model_id}")
async def get_model(model_id: str, request: Request) -> dict:
    _authorize(request)
    service = _service(request)
    if model_id not in (service.engine.model_id, *service.engine.aliases):
        raise ApiError(404, f"The model `{model_id}` does not exist; this server serves `{service.engine.model_id}`",
                       code="model_not_found", param="model")
    return _model_card(service)


@router.post("/chat/completions")
async def chat_completions(request: Request):
    _authorize(request)
    service = _service(request)
    chat = parse_chat_request(parse_json(await _read_body(request, service.max_body_bytes)), service.engine)
    headers = service.limiter.admit(len(chat.prompt))
    try:
        ticket = service.scheduler.submit(chat.prompt, chat.params)
    except Overloaded as err:
        raise ApiError(503, f"the server is over capacity ({err}); retry in a moment", type="server_error",
                       code="overloaded", headers=headers) from None
    completion = Completion(service.engine.model_id, provenance(service.engine), service.scheduler.pace)
    if chat.stream:
        body = _stream(ticket, completion, chat.include_usage, service.limiter)
        return _TicketStream(ticket, body, media_type=sse.MEDIA_TYPE, headers=headers | sse.HEADERS)
    watcher = asyncio.create_task(_cancel_on_disconnect(request, ticket))
    try:
        text, finish = [], None
        async for token in ticket.tokens():
            text.append(token.event.text)
            finish = token.event.finish_reason
    except UserError as err:
        raise ApiError(400, str(err)) from None
    except RuntimeError as err:
        raise ApiError(500, str(err), type="server_error") from None
    finally:
        watcher.cancel()
        ticket.cancel()  # a no-op once finished; stops the work if this handler was cancelled
    if finish is None:
        raise ApiError(503, "the request was stopped before it finished; retry it", type="server_error")
    service.limiter.charge(len(ticket.tokens_seen))
    return JSONResponse(completion.response(ticket, "".join(text), finish), headers=headers)


async def _cancel_on_disconnect(request: Request, ticket: Ticket) -> None:
    """The body has been read, so the next message can only be the client leaving."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    ticket.cancel()


async def _stream(ticket: Ticket, completion: Completion, include_usage: bool, limiter) -> AsyncIterator[bytes]:
    yield sse.event(completion.first_chunk())
    finish = None
    try:
        async for token in ticket.tokens():
            if token.event.text:
                yield sse.event(completion.token_chunk(token))
            finish = token.event.finish_reason
    except UserError as err:
        yield sse.event(ApiError(400, str(err)).body())
    except RuntimeError as err:
        yield sse.event(ApiError(500, str(err), type="server_error").body())
    else:
        if finish is None:
            yield sse.event(ApiError(503, "the request was stopped before it finished; retry it",
                                     type="server_error").body())
        else:
            limiter.charge(len(ticket.tokens_seen))
            yield sse.event(completion.last_chunk(ticket, finish))
            if include_usage:
                yield sse.event(completion.usage_chunk(ticket))
    yield sse.DONE


class _TicketStream(StreamingResponse):
    """A streamed answer whose request is cancelled however the response ends (a client gone included)."""

    def __init__(self, ticket: Ticket, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ticket = ticket

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.ticket.cancel()
            with contextlib.suppress(Exception):
                await self.body_iterator.aclose()
