"""Generation: backends (transformers, vLLM, OpenAI-compatible) and the resumable runner."""
