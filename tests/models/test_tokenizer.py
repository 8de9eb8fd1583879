import pytest

from openlpu.errors import UserError
from openlpu.models.chat_template import ChatTemplate
from openlpu.models.evaluation import eval_text
from openlpu.models.gguf_file import field, open_gguf
from openlpu.models.tiny_gguf import TINY_SYSTEM_MESSAGE, tiny_vocabulary
from openlpu.models.tokenizer import pre_tokenizer

SAMPLES = [
    "Hello, world! The year 2024 cost $1,234.56.",
    "  leading spaces\ttabs\n\nnew lines  and trailing  ",
    "héllo wörld, 日本語 and emoji 🙂",
    "<|im_start|>user\nHi<|im_end|>\n",
    "",
]


def naive_bpe(word: str, merges: list[str]) -> list[str]:
    """Textbook BPE: repeatedly merge the adjacent pair whose merge rule comes first."""
    rank = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
    parts = list(word)
    while True:
        ranked = [(rank[p], i) for i, p in enumerate(zip(parts, parts[1:], strict=False)) if p in rank]
        if not ranked:
            return parts
        _, i = min(ranked)
        parts[i : i + 2] = [parts[i] + parts[i + 1]]


@pytest.mark.parametrize("model", ["tiny", "smollm2"])
def test_encode_decode_round_trips(model, request):
    tok = request.getfixturevalue(model).tokenizer
    for text in SAMPLES:
        assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("model", ["tiny", "smollm2"])
def test_chatml_markers_are_single_tokens(model, request):
    tok = request.getfixturevalue(model).tokenizer
    ids = tok.encode("<|im_start|>user\nHi<|im_end|>")
    assert tok.tokens[ids[0]] == "<|im_start|>" and tok.tokens[ids[-1]] == "<|im_end|>"
    assert tok.decode(ids, skip_special=True) == "user\nHi"
    assert tok.tokens.index("<|im_end|>") in tok.stop_ids


def test_tiny_tokenizer_applies_merges_in_rank_order(tiny):
    tokens, _, merges = tiny_vocabulary()
    words = [w for w, _ in pre_tokenizer("smollm").pre_tokenize_str(eval_text() + " unseen zebra 42")]
    expected = [tokens.index(piece) for w in words for piece in naive_bpe(w, merges)]
    assert tiny.tokenizer.encode(eval_text() + " unseen zebra 42") == expected


def test_smollm2_tokenizer_splits_digits_and_keeps_common_words_whole(smollm2):
    tok = smollm2.tokenizer
    assert [tok.tokens[i] for i in tok.encode("in 2024")] == ["in", "Ġ", "2", "0", "2", "4"]
    assert [tok.tokens[i] for i in tok.encode(" the capital of France")] == ["Ġthe", "Ġcapital", "Ġof", "ĠFrance"]
    assert tok.vocab_size == smollm2.config.vocab == 49152
    assert tok.bos_prefix == []  # the GGUF says tokenizer.ggml.add_bos_token = false


def test_default_system_message_is_the_one_in_the_gguf_template(smollm2):
    template_text = field(open_gguf(smollm2.path), "tokenizer.chat_template")
    start = "{{ '<|im_start|>system\n"
    written = template_text[template_text.index(start) + len(start) : template_text.index("<|im_end|>\n' }}")]
    assert written == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert smollm2.tokenizer.chat_template.default_system == written


def test_chat_rendering_follows_the_template(smollm2):
    tok = smollm2.tokenizer
    question = [{"role": "user", "content": "What is the capital of France?"}]
    assert tok.render_chat(question) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    # A conversation that starts with its own system message gets no default one.
    assert tok.render_chat(conversation, add_generation_prompt=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
    )
    ids = tok.encode_chat(question)
    assert tok.decode(ids) == tok.render_chat(question)
    assert ids.count(tok.tokens.index("<|im_start|>")) == 3


def test_tiny_model_carries_its_own_default_system_message(tiny):
    assert tiny.tokenizer.chat_template.default_system == TINY_SYSTEM_MESSAGE
    assert tiny.tokenizer.render_chat([]) == "<|im_start|>assistant\n"


def test_bad_chat_message_is_refused(tiny):
    with pytest.raises(UserError, match="chat message 1 .* needs a 'role' and a 'content' string"):
        tiny.tokenizer.render_chat([{"role": "user", "content": "hi"}, {"role": "user"}])


def test_non_chatml_template_is_refused():
    with pytest.raises(UserError, match="not ChatML"):
        ChatTemplate.from_template_text("{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}")
