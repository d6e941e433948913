"""Sessions: a session is one trace ID that every span and event of the session lands in."""
