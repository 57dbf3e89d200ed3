"""The messages between the scorer and a sandbox, over one ``multiprocessing`` connection (a socket pair).

Scorer → sandbox: pickles. The sandbox trusts the scorer, and what it sends is anchor-only material.

Sandbox → scorer: **never a pickle**, because unpickling runs code, and the scorer must never run the
sandbox's. A message is one JSON object (strings, numbers, booleans, lists) followed, when it carries
arrays, by one raw buffer per array; the JSON names each array's dtype (from :data:`DTYPES`) and shape,
and :func:`receive` checks both, and the size, before it builds a tensor.
"""

from __future__ import annotations

import json
import math
import pickle
from typing import Any

import torch
from torch import Tensor

#: The dtypes a sandbox may send (samples, and a few integer answers), by name.
DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "bool": torch.bool,
}
_NAMES = {v: k for k, v in DTYPES.items()}

#: The most elements one array from a sandbox may hold (a 400 MB float32 tensor): a bigger one is a fault
#: of the surrogate, refused before it is read into the scorer's memory.
MAX_ELEMENTS = 100_000_000


class WireError(Exception):
    """A malformed message from a sandbox (its fault: the unit fails with this reason)."""


def send_to_sandbox(conn: Any, message: Any) -> None:
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def receive_from_scorer(conn: Any) -> Any:
    return pickle.loads(conn.recv_bytes())


def send_to_scorer(conn: Any, header: dict[str, Any], arrays: tuple[Tensor, ...] = ()) -> None:
    """One message of the sandbox: ``header`` (JSON-able) and ``arrays`` (CPU tensors)."""
    arrays = tuple(torch.as_tensor(a).detach().cpu().contiguous() for a in arrays)
    for a in arrays:
        if a.dtype not in _NAMES:
            raise TypeError(f"cannot send a tensor of dtype {a.dtype}: one of {', '.join(DTYPES)} is needed")
    header = {**header, "arrays": [[_NAMES[a.dtype], list(a.shape)] for a in arrays]}
    conn.send_bytes(json.dumps(header).encode())
    for a in arrays:
        conn.send_bytes(_raw(a))


def _raw(a: Tensor) -> bytes:
    if a.dtype == torch.bfloat16:
        return a.view(torch.int16).numpy().tobytes()
    return a.numpy().tobytes()


def receive_from_sandbox(conn: Any) -> tuple[dict[str, Any], list[Tensor]]:
    """The next message of a sandbox: its header and its tensors, checked. Raises :class:`WireError`
    for anything malformed and ``EOFError`` when the sandbox is gone."""
    try:
        header = json.loads(conn.recv_bytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WireError(f"the sandbox sent a malformed message ({err})") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays", []), list):
        raise WireError("the sandbox sent a message that is not a JSON object with an 'arrays' list")
    tensors = []
    for entry in header.pop("arrays", []):
        try:
            name, shape = entry
            dtype = DTYPES[name]
            shape = [int(s) for s in shape]
        except (KeyError, TypeError, ValueError):
            raise WireError(f"the sandbox described an array as {entry!r}") from None
        if any(s < 0 for s in shape) or math.prod(shape) > MAX_ELEMENTS:
            raise WireError(f"the sandbox sent an array of shape {shape} (at most {MAX_ELEMENTS} elements)")
        data = conn.recv_bytes()
        width = torch.empty((), dtype=dtype).element_size()
        if len(data) != math.prod(shape) * width:
            raise WireError(f"the sandbox sent {len(data)} bytes for an array of shape {shape} and dtype {name}")
        carrier = torch.int16 if dtype == torch.bfloat16 else dtype
        flat = torch.frombuffer(bytearray(data), dtype=carrier) if data else torch.empty(0, dtype=carrier)
        tensors.append(flat.view(dtype).reshape(shape) if carrier != dtype else flat.reshape(shape))
    return header, tensors
