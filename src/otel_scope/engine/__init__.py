"""The engine: the registry of active targets, applying plans to functions and restoring them."""

from otel_scope.engine.registry import Engine, Entry, Handle

__all__ = ["Engine", "Entry", "Handle"]
