"""Test helpers that tests, benchmarks and smoke configs share; never used by a real run.

``openai_http`` is the one OpenAI-compatible HTTP server base (routes, errors, counters,
faults) that both test servers subclass: ``server``, in front of a local model (tests and the
generation benchmark talk to it through the real ``openai`` client), and the build tests'
scripted teacher (``tests/vul2safe/build/scripted_teacher.py``); ``tiny_model`` writes a
tiny random Llama checkpoint with a chat template (no pretrained model is reachable offline).
Product code must not import from here except to build that tiny model for CPU smoke configs.
"""
