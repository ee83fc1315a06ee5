"""Loading the networks the dedup stage ships in `webli/models/` (trained by scripts in benchmarks/)."""

from __future__ import annotations

import hashlib
from importlib import resources


def shipped_file(file_name: str):
    """The file shipped as `webli/models/<file_name>` (an importlib.resources Traversable)."""
    return resources.files("webli.models").joinpath(file_name)


def shipped_digest(file_name: str) -> str:
    """sha256 of the weights shipped as `webli/models/<file_name>` (what a fingerprint of them holds)."""
    return hashlib.sha256(shipped_file(file_name).read_bytes()).hexdigest()


def load_shipped(model, file_name: str, remedy: str):
    """`model` (a torch module) with the float16 weights shipped as `webli/models/<file_name>`, in eval mode.

    A missing file raises FileNotFoundError naming it and `remedy` (what to do about it).
    """
    import torch

    weights = shipped_file(file_name)
    if not weights.is_file():
        raise FileNotFoundError(f"the dedup stage's weights {weights} are missing: {remedy}")
    with weights.open("rb") as handle:
        state = torch.load(handle, map_location="cpu", weights_only=True)
    model.load_state_dict({name: tensor.float() for name, tensor in state.items()})
    return model.eval()
