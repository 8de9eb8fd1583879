"""The tokenizer a GGUF carries (`tokenizer.ggml.*`), rebuilt as a byte-level BPE with `tokenizers`.

GGUF stores a GPT-2 style vocabulary: token strings in the byte-to-unicode alphabet ("Ġ" is a space),
merges as "left right" strings, a type per token (control tokens such as <|im_start|> are matched
whole and never split), and a pre-tokenizer name saying how text is cut into words before BPE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gguf import GGUFReader, Keys, TokenType
from tokenizers import AddedToken, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from openlpu.errors import UserError
from openlpu.models.chat_template import IM_END, ChatTemplate
from openlpu.models.gguf_file import field

# llama.cpp pre-tokenizer names -> whether digits are split one by one before the GPT-2 word regex.
# (smollm/starcoder/refact/codeshell use "\p{N}" then the GPT-2 regex; gpt2 uses the GPT-2 regex alone.)
PRE_TOKENIZERS = {"gpt2": False, "smollm": True, "starcoder": True, "refact": True, "codeshell": True}
END_OF_TURN_TOKENS = (IM_END, "<|endoftext|>")


def pre_tokenizer(name: str) -> pre_tokenizers.PreTokenizer:
    if name not in PRE_TOKENIZERS:
        raise UserError(f"tokenizer pre-tokenizer {name!r} is not supported; openlpu knows "
                        f"{', '.join(PRE_TOKENIZERS)}")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if PRE_TOKENIZERS[name]:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    return byte_level


class Tokenizer:
    """Encode/decode text and render chats for one model; ids are the GGUF's token indices."""

    def __init__(
        self,
        tokens: Sequence[str],
        token_types: Sequence[int],
        merges: Sequence[str],
        *,
        pre: str,
        bos_id: int | None,
        eos_id: int,
        add_bos: bool,
        chat_template: ChatTemplate | None,
    ) -> None:
        index = {t: i for i, t in enumerate(tokens)}
        if len(index) != len(tokens):
            raise UserError("the GGUF vocabulary has duplicate token strings, which a BPE vocabulary cannot "
                            "map back to ids; use a GGUF converted from a Hugging Face tokenizer.json")
        self.tokens = list(tokens)
        self.bos_id, self.eos_id, self.add_bos = bos_id, eos_id, add_bos
        self.chat_template = chat_template
        bpe = models.BPE(vocab=index, merges=[tuple(m.split(" ")) for m in merges])
        self._hf = HFTokenizer(bpe)
        self._hf.pre_tokenizer = pre_tokenizer(pre)
        self._hf.decoder = decoders.ByteLevel()
        # Control and user-defined tokens are matched as whole strings before BPE sees the text.
        self._hf.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                     for t, k in zip(tokens, token_types, strict=True) if k == TokenType.CONTROL])
        self._hf.add_tokens([AddedToken(t, special=False, normalized=False)
                             for t, k in zip(tokens, token_types, strict=True) if k == TokenType.USER_DEFINED])
        self.stop_ids = frozenset({eos_id} | {index[t] for t in END_OF_TURN_TOKENS if t in index})

    @classmethod
    def from_gguf(cls, reader: GGUFReader) -> Tokenizer:
        kind = field(reader, Keys.Tokenizer.MODEL)
        if kind != "gpt2":
            raise UserError(f"{reader.data.filename}: tokenizer model {kind!r} is not supported; openlpu reads "
                            "GGUFs with a byte-level BPE ('gpt2') tokenizer, such as smollm2-135m")
        template = field(reader, Keys.Tokenizer.CHAT_TEMPLATE)
        return cls(
            field(reader, Keys.Tokenizer.LIST),
            field(reader, Keys.Tokenizer.TOKEN_TYPE),
            field(reader, Keys.Tokenizer.MERGES),
            pre=field(reader, Keys.Tokenizer.PRE, "gpt2"),
            bos_id=field(reader, Keys.Tokenizer.BOS_ID),
            eos_id=field(reader, Keys.Tokenizer.EOS_ID),
            add_bos=bool(field(reader, Keys.Tokenizer.ADD_BOS, False)),
            chat_template=None if template is None else ChatTemplate.from_template_text(template),
        )

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special-token strings in it become their single ids. No BOS is added."""
        return self._hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
        return self._hf.decode(list(ids), skip_special_tokens=skip_special)

    def render_chat(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
        if self.chat_template is None:
            raise UserError("this model's GGUF has no chat template; pass plain text instead of chat messages")
        return self.chat_template.render(messages, add_generation_prompt)

    def encode_chat(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> list[int]:
        """Prompt ids of a conversation in the model's own chat template (BOS first if the model wants it)."""
        return self.bos_prefix + self.encode(self.render_chat(messages, add_generation_prompt))

    @property
    def bos_prefix(self) -> list[int]:
        """What starts every sequence: [BOS] if the GGUF asks for it (tokenizer.ggml.add_bos_token), else []."""
        return [self.bos_id] if self.add_bos and self.bos_id is not None else []
