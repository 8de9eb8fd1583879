import numpy as np

from openlpu.runtime.detokenize import IncrementalDetokenizer


def test_a_character_split_over_tokens_appears_when_it_is_complete(tiny):
    tok = tiny.tokenizer
    ids = tok.encode("tea \u2615")  # the cup is 3 UTF-8 bytes, 3 byte tokens in the tiny vocabulary
    detok = IncrementalDetokenizer(tok)
    pieces = [detok.feed(i) for i in ids]
    assert pieces[-3:] == ["", "", "\u2615"]
    assert "".join(pieces) == "tea \u2615"


def test_pieces_join_to_the_text_of_all_ids_even_for_invalid_bytes(tiny):
    tok = tiny.tokenizer
    rng = np.random.default_rng(0)
    for _ in range(20):
        ids = rng.integers(0, tok.vocab_size, size=40).tolist()  # random bytes: broken characters included
        detok = IncrementalDetokenizer(tok)
        text = "".join(detok.feed(i) for i in ids) + detok.flush()
        assert text == tok.decode(ids, skip_special=True)
