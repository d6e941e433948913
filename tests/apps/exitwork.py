"""A resource its finalizer closes: the one in RESOURCE lives until interpreter exit, when Python
sets this module's globals to None (names starting with "_" first) and then drops RESOURCE,
whose __del__ calls close()."""

from typing import IO


class Resource:
    def __init__(self, name: str, log: IO[str]) -> None:
        self.name = name
        self.log = log

    def close(self) -> None:
        note = f"closed {self.name}\n"
        self.log.write(note)
        self.log.flush()

    def __del__(self) -> None:
        self.close()


RESOURCE: Resource | None = None
