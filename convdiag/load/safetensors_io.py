"""safetensors files read by hand: no dependency on the ``safetensors`` package.

Layout (huggingface/safetensors): an 8-byte little-endian header length N, N bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``
(maybe padded with spaces), then the raw little-endian tensor bytes.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from convdiag.errors import InputError

_ST_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
for _name, _attr in (("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64"),
                     ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2")):  # fmt: skip
    if hasattr(torch, _attr):
        _ST_DTYPES[_name] = getattr(torch, _attr)


def read_safetensors(
    path: str | os.PathLike[str],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Parse a safetensors file: (tensors, metadata), without the ``safetensors`` package.

    Layout: 8-byte little-endian header length N, N bytes of JSON
    ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``,
    then the raw little-endian bytes, offsets relative to the end of the header. Each
    tensor has end - begin = prod(shape) * itemsize. Any inconsistency -> InputError.
    """
    p = Path(path)
    data = p.read_bytes()

    def corrupt(why: str) -> InputError:
        return InputError(f"{p}: truncated or corrupt safetensors file ({why})")

    if len(data) < 8:
        raise corrupt("no header")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise corrupt(f"header of {n} bytes in a {len(data)}-byte file")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise corrupt(f"bad JSON header: {e}") from None
    if not isinstance(header, dict):
        raise corrupt("header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise corrupt("__metadata__ is not a JSON object")
    base, body = 8 + n, len(data) - 8 - n
    tensors: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        try:
            dtype = _ST_DTYPES[info["dtype"]]
            shape = [int(s) for s in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError, OverflowError):  # int(inf) overflows
            raise corrupt(f"bad entry for {name!r}") from None
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not 0 <= begin <= end <= body or end - begin != math.prod(shape) * itemsize:
            raise corrupt(f"{name!r}: offsets {begin}..{end} do not fit shape {shape}")
        chunk = bytearray(data[base + begin : base + end])
        flat = torch.frombuffer(chunk, dtype=dtype) if chunk else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(shape)
    return tensors, {str(k): str(v) for k, v in meta.items()}
