"""openlpu.models: GGUF loading, tokenizer and chat template, the numpy reference, evaluation.

gguf_file (GGUF -> zoo.DecoderConfig, LlamaWeights), registry (model names, load_model), tokenizer and
chat_template, reference (fp32 llama with KV cache), numerics (the swappable matmul), evaluation
(perplexity, agreement), tiny_gguf (a small random model for tests). See docs/models.md.
"""
