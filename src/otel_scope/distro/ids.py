"""Span and trace IDs that leave the program's random numbers alone.

The SDK's default ``RandomIdGenerator`` draws from the global :mod:`random` module. Every span
would then shift the sequence a seeded program sees (``random.seed(1); random.random()`` gives
another number once a traced call ran in between), which changes the program's behaviour. These
IDs come from a private generator instead, reseeded in forked children like the global one, so
a parent and its child never produce the same IDs.
"""

from __future__ import annotations

import os
import random

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator


class PrivateRandomIdGenerator(RandomIdGenerator):
    """Random IDs from a private ``random.Random`` (entry point ``otel_scope``)."""

    def __init__(self) -> None:
        self._random = random.Random()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._random.seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1
