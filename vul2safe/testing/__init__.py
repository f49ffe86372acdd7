"""Test helpers that tests, benchmarks and smoke configs share; never used by a real run.

``server`` is a small OpenAI-compatible HTTP server in front of a local model (tests and the
generation benchmark talk to it through the real ``openai`` client); ``tiny_model`` writes a
tiny random Llama checkpoint with a chat template (no pretrained model is reachable offline).
Product code must not import from here except to build that tiny model for CPU smoke configs.
"""
