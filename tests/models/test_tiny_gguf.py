from openlpu.models.tiny_gguf import SPECIAL_TOKENS, TINY_CONFIG, tiny_vocabulary, write_tiny_gguf


def test_writing_is_deterministic_in_the_seed(tmp_path):
    a = write_tiny_gguf(tmp_path / "a.gguf", seed=5).read_bytes()
    assert a == write_tiny_gguf(tmp_path / "b.gguf", seed=5).read_bytes()
    assert a != write_tiny_gguf(tmp_path / "c.gguf", seed=6).read_bytes()


def test_vocabulary_is_a_consistent_byte_level_bpe():
    tokens, types, merges = tiny_vocabulary()
    assert len(tokens) == len(set(tokens)) == TINY_CONFIG.vocab == 384
    assert tuple(tokens[:3]) == SPECIAL_TOKENS and types[:3] == [3, 3, 3] and set(types[3:]) == {1}
    known = set(tokens)
    for rule in merges:
        left, right = rule.split(" ")
        assert left in known and right in known and left + right in known
