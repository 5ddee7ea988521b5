"""The common base of every wire type and the one place pydantic errors become ours.

Kubernetes JSON is camelCase and grows new fields every release; interLink adds its own oddly
cased keys (``PodUID``, ``projectedvolumemaps``, ``Bytes``). Every model therefore

- maps snake_case attributes to camelCase keys (explicit aliases where Kubernetes or interLink
  deviate, e.g. ``podIP``, ``configMaps``),
- accepts both the key and the attribute name on input (``populate_by_name``),
- **keeps unknown fields** (``extra="allow"``) so a Pod read and written back loses nothing, and
  otherwise ignores them: a newer Kubernetes or interLink never makes flashlink crash,
- reads JSON ``null`` for a list or a map as empty (Go marshals a nil slice as ``null``, and
  interLink sends ``"configMaps": null``).
"""

from __future__ import annotations

__all__ = ["KubeModel", "NullableDict", "NullableList", "parse_as"]

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from flashlink.kube.errors import InvalidObjectError

T = TypeVar("T")


def _none_to_list(value: object) -> object:
    return [] if value is None else value


def _none_to_dict(value: object) -> object:
    return {} if value is None else value


NullableList = Annotated[list[T], BeforeValidator(_none_to_list)]
"""A list that reads JSON ``null`` as ``[]``."""

NullableDict = Annotated[dict[str, T], BeforeValidator(_none_to_dict)]
"""A string-keyed map that reads JSON ``null`` as ``{}``."""


class KubeModel(BaseModel):
    """Base of the wire types: camelCase on the wire, unknown fields kept and ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        validate_default=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict with the wire's key names, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "list[", "dict[", "json-or-python")):
            # pydantic's internal validator names, not fields the user wrote
            continue
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def parse_as(model: Any, data: object, kind: str) -> Any:
    """Validate ``data`` as ``model`` (a class or type), mapping pydantic's errors to ours.

    The message names every offending field by its wire path and says what was expected.
    """
    try:
        return TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        problems = [
            f"{_location(err['loc'])}: {err['msg']} (got {_short(err.get('input'))})"
            for err in exc.errors(include_url=False)
        ]
        raise InvalidObjectError(kind, problems) from exc


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
