"""ConfigMaps and Secrets: the data interLink attaches to a create request.

Secret ``data`` and ConfigMap ``binaryData`` hold base64 text on the wire; :meth:`files` gives
the decoded bytes (what a volume file or an env value contains). Invalid base64 is reported at
read time, naming the object and the key, rather than when a job is already running.
"""

from __future__ import annotations

__all__ = ["ConfigMap", "Secret", "parse_config_map", "parse_secret"]

import base64
import binascii
from typing import Any, Literal

from pydantic import Field, field_validator

from flashlink.kube._base import KubeModel, NullableDict, parse_as
from flashlink.kube.errors import InvalidObjectError
from flashlink.kube.pod import ObjectMeta


def _check_base64(values: dict[str, str]) -> dict[str, str]:
    for key, text in values.items():
        try:
            base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"the value of key {key!r} is not valid base64 ({exc})") from exc
    return values


class ConfigMap(KubeModel):
    api_version: str = "v1"
    kind: Literal["ConfigMap"] = "ConfigMap"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    data: NullableDict[str] = Field(default_factory=dict)
    binary_data: NullableDict[str] = Field(default_factory=dict)
    immutable: bool | None = None

    _binary = field_validator("binary_data")(_check_base64)

    def files(self) -> dict[str, bytes]:
        """Every key with its content: ``data`` as UTF-8, ``binaryData`` decoded."""
        out = {key: value.encode() for key, value in self.data.items()}
        out.update({k: base64.b64decode(v) for k, v in self.binary_data.items()})
        return out


class Secret(KubeModel):
    api_version: str = "v1"
    kind: Literal["Secret"] = "Secret"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    type: str | None = None
    data: NullableDict[str] = Field(default_factory=dict)
    string_data: NullableDict[str] = Field(default_factory=dict)
    immutable: bool | None = None

    _data = field_validator("data")(_check_base64)

    def files(self) -> dict[str, bytes]:
        """Every key with its decoded content; ``stringData`` wins, as the API server merges it."""
        out = {key: base64.b64decode(value) for key, value in self.data.items()}
        out.update({key: value.encode() for key, value in self.string_data.items()})
        return out


def _parse(model: type[ConfigMap] | type[Secret], data: Any) -> Any:
    kind = model.__name__
    if not isinstance(data, dict):
        raise InvalidObjectError(
            kind, [f"(top level): expected a mapping, got {type(data).__name__}"]
        )
    if data.get("kind", kind) != kind:
        raise InvalidObjectError(kind, [f"kind: expected {kind!r}, got {data.get('kind')!r}"])
    return parse_as(model, data, kind)


def parse_config_map(data: Any) -> ConfigMap:
    """Read a ConfigMap from a decoded JSON/YAML document."""
    config_map: ConfigMap = _parse(ConfigMap, data)
    return config_map


def parse_secret(data: Any) -> Secret:
    """Read a Secret from a decoded JSON/YAML document (``data`` must be base64)."""
    secret: Secret = _parse(Secret, data)
    return secret
