"""Agents: things that take a prompt and change files in a folder, reported as events.

``base`` defines the event vocabulary and the interface; ``claude_cli`` runs the real Claude
Code CLI, ``replay`` replays a recorded stream-json transcript, and ``stream_json`` turns the
CLI's newline-delimited JSON into events for both.
"""
