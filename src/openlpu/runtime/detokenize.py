"""Token ids to streamed text, one token at a time, without splitting a character.

A byte-level BPE token can end in the middle of a UTF-8 character (an emoji often takes two tokens);
decoded alone it shows the replacement character U+FFFD. Such tokens are held until the character is
complete. Bytes decode independently of what came before, so the pieces joined are exactly the text of
all the ids decoded at once.
"""

from __future__ import annotations

from openlpu.models.tokenizer import Tokenizer

REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._pending: list[int] = []

    def feed(self, token_id: int) -> str:
        """The text this token completes ("" while a character is still open)."""
        self._pending.append(token_id)
        text = self._tokenizer.decode(self._pending, skip_special=True)
        if text.endswith(REPLACEMENT):
            return ""
        self._pending.clear()
        return text

    def flush(self) -> str:
        """Whatever is held at the end of the generation, replacement characters included."""
        text = self._tokenizer.decode(self._pending, skip_special=True)
        self._pending.clear()
        return text
