"""ChatML rendering, the chat template SmolLM2's GGUF carries (`tokenizer.chat_template`).

The template is Jinja; rather than depend on a Jinja engine we recognise ChatML and render it directly.
What the template says, and what `render` does:

    for each message: if it is the first and the conversation does not start with a system message,
        emit "<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n"  (DEFAULT_SYSTEM read from the template)
        emit "<|im_start|>" + role + "\\n" + content + "<|im_end|>\\n"
    if add_generation_prompt: emit "<|im_start|>assistant\\n"
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from openlpu.errors import UserError

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
_DEFAULT_SYSTEM = re.compile(re.escape(IM_START) + r"system\n(.*?)" + re.escape(IM_END), re.DOTALL)


@dataclass(frozen=True)
class ChatTemplate:
    """A ChatML template; `default_system` is the system message added when a conversation has none."""

    default_system: str | None

    @classmethod
    def from_template_text(cls, text: str) -> ChatTemplate:
        if IM_START not in text or IM_END not in text or "add_generation_prompt" not in text:
            raise UserError("the model's chat template is not ChatML (<|im_start|> ... <|im_end|>), the only "
                            "kind openlpu renders; use a ChatML model such as smollm2-135m")
        match = _DEFAULT_SYSTEM.search(text)
        return cls(default_system=match.group(1) if match else None)

    def render(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
        parts = []
        for i, message in enumerate(messages):
            role, content = message.get("role"), message.get("content")
            if not isinstance(role, str) or not role or not isinstance(content, str):
                raise UserError(f"chat message {i} is {dict(message)!r}; each message needs a 'role' and a "
                                "'content' string, e.g. {'role': 'user', 'content': 'Hello'}")
            if i == 0 and role != "system" and self.default_system is not None:
                parts.append(f"{IM_START}system\n{self.default_system}{IM_END}\n")
            parts.append(f"{IM_START}{role}\n{content}{IM_END}\n")
        if add_generation_prompt:
            parts.append(f"{IM_START}assistant\n")
        return "".join(parts)
