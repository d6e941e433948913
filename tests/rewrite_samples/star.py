"""except* (Python 3.11+)."""


def star_handler():
    try:
        raise ExceptionGroup("g", [ValueError(1), TypeError(2)])
    except* ValueError as vals:  # @star_vals
        caught = len(vals.exceptions)  # @star_caught
    except* TypeError as types:  # @star_types
        other = len(types.exceptions)
    return "handled"
