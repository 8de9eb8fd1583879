"""The objects of a chat completion as Groq sends them, streamed (`chat.completion.chunk`) or whole.

Groq's extension `x_groq` carries the request id in the first chunk and the usage with its timing
(`queue_time`, `prompt_time`, `completion_time`, `total_time`, seconds on the simulated LPU timeline)
in the last. openlpu adds `x_openlpu`: on each content chunk the simulated and host seconds since the
request arrived, and at the end where the LPU timing and the tokens come from, the pace, and the same
usage times measured on this host.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from openlpu.runtime.engine import Engine
from openlpu.serve.scheduler import Ticket, TimedToken


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class Completion:
    model: str
    provenance: dict  # where the LPU seconds and the tokens come from (`provenance(engine)`)
    pace: str
    id: str = field(default_factory=lambda: _new_id("chatcmpl-"))
    request_id: str = field(default_factory=lambda: _new_id("req_"))
    created: int = field(default_factory=lambda: int(time.time()))

    def _chunk(self, delta: dict, finish_reason: str | None = None, **extra) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [choice], **extra}

    def first_chunk(self) -> dict:
        return self._chunk({"role": "assistant", "content": ""}, x_groq={"id": self.request_id})

    def token_chunk(self, token: TimedToken) -> dict:
        return self._chunk({"content": token.event.text},
                           x_openlpu={"lpu_time": token.lpu_time, "host_time": token.host_time})

    def last_chunk(self, ticket: Ticket, finish_reason: str) -> dict:
        return self._chunk({}, finish_reason, x_groq={"id": self.request_id, "usage": usage(ticket)},
                           x_openlpu=self._openlpu(ticket))

    def usage_chunk(self, ticket: Ticket) -> dict:
        """The extra chunk of `stream_options.include_usage`: no choices, the usage."""
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage(ticket)}

    def response(self, ticket: Ticket, text: str, finish_reason: str) -> dict:
        message = {"role": "assistant", "content": text}
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
                "usage": usage(ticket), "x_groq": {"id": self.request_id}, "x_openlpu": self._openlpu(ticket)}

    def _openlpu(self, ticket: Ticket) -> dict:
        return {**self.provenance, "pace": self.pace, "host_usage": ticket.host_times()}


def provenance(engine: Engine) -> dict:
    return {"lpu_timing": engine.timing.kind, "lpu_timing_source": engine.timing.source,
            "tokens": engine.tokens_source}


def usage(ticket: Ticket) -> dict:
    prompt, completion = len(ticket.prompt), len(ticket.tokens_seen)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            **ticket.usage_times()}
