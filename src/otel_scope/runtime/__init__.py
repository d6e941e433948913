"""Runtime tracing: wrapt wrappers that turn chosen functions into OTel spans."""
