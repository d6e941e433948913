"""A click command line as users write one: a group and its commands, defined with click's
decorators, so each module attribute is a ``click.Command`` holding the function in
``callback`` (see tests/test_click.py)."""
