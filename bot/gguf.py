"""The metadata of a GGUF model file: the key-value pairs at its start (format version 2
and 3, little-endian), read without a dependency.

Only what the embedded model server needs is kept (strings and integers: the chat template,
the trained context length); the tokenizer's long arrays are skipped, not decoded.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

_MAGIC = b"GGUF"
# Value types by their code in the file: struct formats of the fixed-size ones.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING = 8
_ARRAY = 9


class NotGguf(ValueError):
    """The file is not a GGUF model file (or it is cut short)."""


def _read(file: BinaryIO, size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise NotGguf("the file ends inside its metadata")
    return data


def _unpack(file: BinaryIO, fmt: str) -> int | float | bool:
    value: int | float | bool = struct.unpack("<" + fmt, _read(file, struct.calcsize(fmt)))[0]
    return value


def _string(file: BinaryIO) -> str:
    return _read(file, int(_unpack(file, "Q"))).decode("utf-8", "replace")


def _value(file: BinaryIO, kind: int) -> str | int | float | bool | None:
    """The value of type `kind` at the file's position; None for an array (skipped)."""
    if kind == _STRING:
        return _string(file)
    if kind == _ARRAY:
        item_kind, count = int(_unpack(file, "I")), int(_unpack(file, "Q"))
        if item_kind in _SCALARS:
            file.seek(struct.calcsize(_SCALARS[item_kind]) * count, 1)
        else:
            for _ in range(count):
                _value(file, item_kind)
        return None
    if kind not in _SCALARS:
        raise NotGguf(f"unknown metadata value type {kind}")
    return _unpack(file, _SCALARS[kind])


def read_metadata(path: Path) -> dict[str, str | int | float | bool]:
    """The file's metadata (arrays left out). Raises OSError if it cannot be read and
    NotGguf if it is not a GGUF file."""
    with path.open("rb") as file:
        if file.read(4) != _MAGIC:
            raise NotGguf("it does not start as a GGUF file does")
        version = _unpack(file, "I")
        if version not in (2, 3):
            raise NotGguf(f"GGUF version {version} is not one this reads (2 or 3)")
        _unpack(file, "Q")  # the tensor count
        metadata: dict[str, str | int | float | bool] = {}
        for _ in range(int(_unpack(file, "Q"))):
            key = _string(file)
            value = _value(file, int(_unpack(file, "I")))
            if value is not None:
                metadata[key] = value
        return metadata
