"""Test support code: the fake Anthropic Messages API server and helpers to run the real claude CLI."""
