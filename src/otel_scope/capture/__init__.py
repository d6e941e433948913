"""Everything that touches user values: safe serialization, redaction and rate limits.

Nothing else in otel-scope reads a user value directly; it asks a :class:`Serializer`, which
never runs user code unless told to, never raises and always bounds its output.
"""

from otel_scope.capture.ratelimit import RateLimiter
from otel_scope.capture.redaction import REDACTED, Redactor
from otel_scope.capture.scrubbing import Scrubber
from otel_scope.capture.serializer import Serializer

__all__ = ["REDACTED", "RateLimiter", "Redactor", "Scrubber", "Serializer"]
