"""Shell words built from literal data and our own variables, and nothing else.

This module is the only place where text meets the shell. A :class:`Word` is a sequence of
parts, each either **literal data** (any user string: rendered single-quoted, so bash never
interprets a byte of it) or a **variable of the script** (a name we chose, rendered as
``"${NAME}"``). Concatenating the rendered parts gives one shell word whose value is exactly the
concatenation of the data and the variables' values. User strings can therefore never be
executed, expanded or split, whatever they contain: quotes, ``$``, backticks, newlines, globs,
non-ASCII. NUL is the one byte no shell word or argv element can hold; it is rejected.
"""

from __future__ import annotations

__all__ = ["Var", "Word", "check_text", "quote", "word"]

import re
from dataclasses import dataclass

_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_VAR_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


def check_text(text: str, field: str) -> str:
    """``text`` if a shell word and a file can carry it exactly, else ``ValueError``."""
    if "\x00" in text:
        raise ValueError(
            f"{field}: contains a NUL byte, which no command line or environment can carry"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{field}: is not valid Unicode text ({exc.reason})") from exc
    return text


def quote(text: str) -> str:
    """``text`` as one shell word with exactly that value (single quotes, ``'`` as ``'\\''``)."""
    if _SAFE.fullmatch(text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


@dataclass(frozen=True)
class Var:
    """A reference to a variable that the script itself sets (never to user-chosen names)."""

    name: str

    def __post_init__(self) -> None:
        if not _VAR_NAME.fullmatch(self.name):
            raise ValueError(f"script variables are upper-case identifiers, got {self.name!r}")


@dataclass(frozen=True)
class Word:
    """One shell word: literal strings and :class:`Var` references, concatenated."""

    parts: tuple[str | Var, ...]

    def render(self) -> str:
        if not self.parts:
            return "''"
        out = []
        for part in self.parts:
            if isinstance(part, Var):
                out.append(f'"${{{part.name}}}"')
            elif part:
                out.append(quote(part))
        return "".join(out) or "''"

    def __add__(self, other: Word | str | Var) -> Word:
        if isinstance(other, Word):
            return Word(self.parts + other.parts)
        return Word((*self.parts, other))


def word(*parts: str | Var) -> Word:
    """A :class:`Word` from parts: ``word(Var("FL_SCRATCH"), "/v/0")``."""
    return Word(tuple(parts))
