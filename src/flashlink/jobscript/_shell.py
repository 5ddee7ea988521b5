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

__all__ = ["Var", "Word", "check_text", "or_cannot_run", "quote", "word", "words"]

import re
from functools import lru_cache

_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_VAR_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


def check_text(text: str, field: str) -> str:
    """``text`` if a shell word and a file can carry it exactly, else ``ValueError``."""
    if text.isascii() and "\x00" not in text:
        return text  # the common case, without encoding
    if "\x00" in text:
        raise ValueError(
            f"{field}: contains a NUL byte, which no command line or environment can carry"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{field}: is not valid Unicode text ({exc.reason})") from exc
    return text


@lru_cache(maxsize=8192)  # the same flags and paths recur in every container's command
def quote(text: str) -> str:
    """``text`` as one shell word with exactly that value (single quotes, ``'`` as ``'\\''``)."""
    if _SAFE.fullmatch(text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


class Var:
    """A reference to a variable that the script itself sets (never to user-chosen names)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not _VAR_NAME.fullmatch(name):
            raise ValueError(f"script variables are upper-case identifiers, got {name!r}")
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Var) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Var", self.name))

    def __repr__(self) -> str:
        return f"Var({self.name!r})"


class Word:
    """One shell word: literal strings and :class:`Var` references, concatenated.

    A plain slotted class rather than a frozen dataclass: a big Pod makes tens of thousands
    of words, and dataclass construction was a tenth of the render time (profiled).
    """

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[str | Var, ...]) -> None:
        self.parts = parts

    def render(self) -> str:
        parts = self.parts
        if len(parts) == 1 and type(parts[0]) is str:
            return quote(parts[0]) if parts[0] else "''"  # most words: one literal
        out = [f'"${{{p.name}}}"' if isinstance(p, Var) else quote(p) for p in parts if p != ""]
        return "".join(out) or "''"

    def __add__(self, other: Word | str | Var) -> Word:
        if isinstance(other, Word):
            return Word(self.parts + other.parts)
        return Word((*self.parts, other))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Word) and other.parts == self.parts

    def __hash__(self) -> int:
        return hash(self.parts)

    def __repr__(self) -> str:
        return f"Word({self.parts!r})"


def words(*texts: str) -> list[Word]:
    """One literal :class:`Word` per text."""
    return [Word((t,)) for t in texts]


def word(*parts: str | Var) -> Word:
    """A :class:`Word` from parts: ``word(Var("FL_SCRATCH"), "/v/0")``."""
    return Word(tuple(parts))


def or_cannot_run(command: str, container: str, reason: str, message: str) -> str:
    """``command``, or else mark ``container`` as unable to run (``reason``, ``message``) and
    return from its function: the one way a container's set-up step fails."""
    return f"{command} || {{ fl_cannot_run {quote(container)} {reason} {quote(message)}; return; }}"
