"""Errors that reach users.

``UserError`` is bad user input: the CLI prints its one line and exits with code 2.
Anything else escaping the pipeline is an internal error (exit code 1).
"""

from __future__ import annotations


class UserError(Exception):
    """Bad user input, reported as one line: ``<source>: <field>: <message>``.

    ``source`` is the file (or the thing) the input came from, ``field`` the dotted path
    of the offending key; either may be empty.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.message = " ".join(str(message).split())  # always one line
        self.source = source
        self.field = field
        super().__init__(self.line())

    def line(self) -> str:
        parts = [p for p in (self.source, self.field) if p]
        return ": ".join(parts + [self.message])

    def at(self, *, source: str | None = None, field: str | None = None) -> "UserError":
        """The same error, with source/field filled in where still missing."""
        return UserError(
            self.message,
            source=self.source or source,
            field=self.field or field,
        )


def first_line(e: BaseException) -> str:
    """An exception's first message line (its type name when the message is empty)."""
    text = str(e)
    return text.splitlines()[0] if text else type(e).__name__
