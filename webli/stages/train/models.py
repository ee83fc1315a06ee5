"""Model configs and CLIP loading: open_clip names, config JSON files, local checkpoints, pretrained tags.

What `model` may be, in `load_clip` and the trainer:

- an open_clip built-in name (`ViT-B-32`) or a config shipped in `webli/models/` (`webli-tiny`);
- a model config JSON file (open_clip's format; a `"name"` key names it, else the file stem);
- a folder holding `model_config.json` (+ `model.pt`): what the trainer and the bootstrap filter write;
- a checkpoint file with a `model_config.json` beside it;
- `hf-hub:org/repo` or `local-dir:/path` (open_clip's own schemas).

What `pretrained` may be: None (random weights), a checkpoint file, or an open_clip
tag such as `laion2b_s34b_b79k`. A tag is only used when its file is already in the
local cache or downloads are allowed; otherwise loading fails at once with what to do.
"""

from __future__ import annotations

import atexit
import importlib.resources
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import urllib.parse
from pathlib import Path

import open_clip
import torch
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

from webli.pipeline.config import ConfigError

log = logging.getLogger(__name__)

CONFIG_FILE = "model_config.json"
CHECKPOINT_FILE = "model.pt"
NAME_KEY = "name"
REQUIRED_KEYS = ("embed_dim", "vision_cfg", "text_cfg")
SCHEMA_PREFIXES = ("hf-hub:", "local-dir:")
# open_clip pretrained-tag preprocessing key -> create_model_and_transforms argument
PREPROCESS_ARGUMENTS = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation",
                        "resize_mode": "image_resize_mode"}
VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

_registered: dict[str, dict] = {}  # name -> config, for configs this process registered
_registry_dir: Path | None = None


class ModelLoadError(ConfigError):
    """A model or its weights cannot be loaded; the message says what to do."""


def shipped_model_names() -> list[str]:
    """Names of the model configs shipped in `webli/models/`."""
    return sorted(p.name[:-5] for p in importlib.resources.files("webli.models").iterdir()
                  if p.name.endswith(".json"))


def shipped_config_path(name: str) -> Path | None:
    """Path of a shipped model config, or None."""
    path = importlib.resources.files("webli.models") / f"{name}.json"
    return Path(str(path)) if path.is_file() else None


def split_model_config(raw: dict, default_name: str) -> tuple[str, dict]:
    """(name, open_clip config) of a config JSON: plain, with a "name" key, or open_clip's {"model_cfg": ...}."""
    name = raw.get(NAME_KEY) or default_name
    config = raw.get("model_cfg", raw)
    config = {k: v for k, v in config.items() if k != NAME_KEY}
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise ModelLoadError(f"model config {name!r} lacks {missing}: not an open_clip model config")
    if not VALID_NAME.match(name):
        raise ModelLoadError(f"model config name {name!r} must be letters, digits, '_', '-' or '.'")
    return name, config


def read_model_config(path: str | Path) -> tuple[str, dict]:
    """(name, open_clip config) read from a JSON file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"cannot read model config {path}: {err}") from None
    if not isinstance(raw, dict):
        raise ModelLoadError(f"model config {path} must hold a JSON object")
    return split_model_config(raw, path.stem)


def _registry() -> Path:
    """A folder, removed at exit, holding clean copies of the configs this process registered."""
    global _registry_dir
    if _registry_dir is None:
        _registry_dir = Path(tempfile.mkdtemp(prefix="webli-model-configs-"))
        atexit.register(shutil.rmtree, _registry_dir, True)
    return _registry_dir


def _add_to_open_clip(name: str, config: dict) -> None:
    """Register `config` under `name` with open_clip (which names configs by file stem)."""
    builtin = open_clip.get_model_config(name)
    if builtin is not None and name not in _registered and builtin != config:
        raise ModelLoadError(f"model config {name!r} differs from open_clip's built-in {name!r}: rename it")
    if _registered.get(name) == config:
        return
    if name in _registered:
        log.warning("model config %s registered again with different content: the new one is used", name)
    path = _registry() / f"{name}.json"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    open_clip.add_model_config(path)
    _registered[name] = config
    log.debug("registered model config %s with open_clip", name)


def register_model_config(path_or_name: str | Path) -> str:
    """Register a model config with open_clip and return its model name.

    Accepts a config JSON path, a folder holding `model_config.json`, the name of
    a shipped config (`webli-tiny`) or a name open_clip already knows.
    """
    text = str(path_or_name)
    path = Path(text)
    if path.is_dir():
        path = path / CONFIG_FILE
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise ModelLoadError(f"model config {path} does not exist")
        name, config = read_model_config(path)
    elif (shipped := shipped_config_path(text)) is not None:
        name, config = read_model_config(shipped)
    elif text in open_clip.list_models():
        return text
    else:
        raise ModelLoadError(f"unknown model {text!r}: give an open_clip model name, a model config JSON path or "
                             f"one of the shipped configs {shipped_model_names()}")
    _add_to_open_clip(name, config)
    return name


def model_config_record(name: str) -> dict:
    """The open_clip config of a registered model with its name: what `model_config.json` holds."""
    config = open_clip.get_model_config(name)
    if config is None:
        raise ModelLoadError(f"model {name!r} is not registered with open_clip")
    return {NAME_KEY: name, **config}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' means CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but torch sees no CUDA device")
    return resolved


def resolve_model(model: str | Path) -> tuple[str, str | None]:
    """(registered model name, checkpoint found beside the config or None) for any accepted `model` form."""
    text = str(model)
    if text.startswith(SCHEMA_PREFIXES):
        return text, None
    path = Path(text)
    if path.is_dir():
        checkpoint = path / CHECKPOINT_FILE
        return register_model_config(path), str(checkpoint) if checkpoint.is_file() else None
    if path.is_file() and path.suffix != ".json":
        beside = path.parent / CONFIG_FILE
        if not beside.is_file():
            raise ModelLoadError(f"checkpoint {path} has no {CONFIG_FILE} beside it: pass the model name or "
                                 "config JSON as the model and the checkpoint as pretrained")
        return register_model_config(beside), str(path)
    return register_model_config(text), None


def _is_offline() -> bool:
    """Hugging Face's offline switch (HF_HUB_OFFLINE), read now as well as when the hub was imported."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES",
                                                                                                 "TRUE"}


def download_source(pretrained_cfg: dict) -> str | None:
    """The URL the weights of a pretrained tag come from: the Hugging Face endpoint (HF_ENDPOINT) for hub
    entries, as open_clip prefers them, else the tag's own URL."""
    if pretrained_cfg.get("hf_hub"):
        from huggingface_hub import constants

        return constants.ENDPOINT
    return pretrained_cfg.get("url") or None


def reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the URL's host opens within `timeout`: a quick check that fails in seconds
    where the hub's own requests would retry for half a minute."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)),
                                      timeout=timeout):
            return True
    except OSError:
        return False


def _hf_cached_file(hf_hub: str) -> tuple[str | None, str]:
    """(cached local file or None, a human description) of an open_clip `hf_hub` pretrained entry."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, filename = os.path.split(hf_hub)
    filename = filename or HF_WEIGHTS_NAME
    candidates = [HF_SAFE_WEIGHTS_NAME] if filename == HF_WEIGHTS_NAME else []
    if filename.endswith((".bin", ".pth")):
        candidates.append(filename[:-4] + ".safetensors")
    for candidate in [*candidates, filename]:
        found = try_to_load_from_cache(repo_id, candidate)
        if isinstance(found, str) and os.path.isfile(found):
            return found, f"{repo_id}/{candidate}"
    return None, f"`huggingface-cli download {repo_id} {filename}`"


def cached_pretrained_file(pretrained_cfg: dict) -> tuple[str | None, str]:
    """(local file of a pretrained tag if already downloaded, else None; how to get it)."""
    if pretrained_cfg.get("file"):
        return pretrained_cfg["file"], pretrained_cfg["file"]
    hints = []
    if pretrained_cfg.get("hf_hub"):
        found, hint = _hf_cached_file(pretrained_cfg["hf_hub"])
        if found:
            return found, hint
        hints.append(hint)
    if url := pretrained_cfg.get("url"):
        target = Path.home() / ".cache" / "clip" / os.path.basename(url)
        if target.is_file():
            return str(target), str(target)
        hints.append(f"download {url}")
    return None, " or ".join(hints) or "no download source is known"


def resolve_pretrained(name: str, pretrained: str | None) -> tuple[str | None, dict]:
    """(what to pass open_clip as `pretrained`, the tag's preprocessing as create_model_and_transforms arguments).

    A tag whose file is cached becomes that file's path, so open_clip never
    touches the network. A tag not cached is downloaded here, once (so Dask
    workers are handed a file), when its source can be reached; offline
    (HF_HUB_OFFLINE=1, or the source unreachable) it fails fast saying what
    to do.
    """
    if pretrained is None or os.path.isfile(pretrained):
        return pretrained, {}
    pretrained_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not pretrained_cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ModelLoadError(f"pretrained {pretrained!r} is neither a file nor an open_clip tag of {name!r} "
                             f"(its tags: {tags or 'none'})")
    found, how = cached_pretrained_file(pretrained_cfg)
    preprocess = {arg: pretrained_cfg[k] for k, arg in PREPROCESS_ARGUMENTS.items() if k in pretrained_cfg}
    if found:
        if pretrained_cfg.get("quick_gelu", False) != open_clip.get_model_config(name).get("quick_gelu", False):
            log.warning("pretrained %s was trained with quick_gelu=%s; use the '-quickgelu' model variant to match",
                        pretrained, pretrained_cfg.get("quick_gelu", False))
        return found, preprocess
    source = download_source(pretrained_cfg)
    if _is_offline():
        why = "downloads are off (HF_HUB_OFFLINE=1)"
    elif source is None or not reachable(source):
        why = f"{source or 'their download source'} cannot be reached"
    else:
        log.info("downloading the weights of %s / %s from %s", name, pretrained, source)
        return open_clip.download_pretrained(pretrained_cfg), preprocess
    raise ModelLoadError(
        f"the weights of {name} / {pretrained} are not on this machine and {why}. Get the checkpoint where "
        f"there is a network ({how}), copy the file here and pass its path as pretrained "
        "(e.g. score.pretrained: /models/open_clip_pytorch_model.bin), or use the bootstrap filter "
        "(score.model: bootstrap).")


def create_clip(model: str | Path, pretrained: str | None = None, device: str | torch.device = "auto"):
    """(name, model, train preprocess, eval preprocess, tokenizer) for any accepted `model` / `pretrained`."""
    name, beside = resolve_model(model)
    weights, preprocess_cfg = resolve_pretrained(name, pretrained or beside)
    try:
        clip, preprocess_train, preprocess_eval = open_clip.create_model_and_transforms(
            name, pretrained=weights, device=resolve_device(device), **preprocess_cfg)
    except (RuntimeError, FileNotFoundError, ValueError) as err:
        raise ModelLoadError(f"open_clip could not create {name!r} with pretrained={weights!r}: {err}") from err
    return name, clip, preprocess_train, preprocess_eval, open_clip.get_tokenizer(name)


def load_clip(model: str | Path, pretrained: str | None = None, device: str | torch.device = "auto"):
    """(model in eval mode, eval preprocess, tokenizer): the one call a scorer needs.

    `model`: open_clip name, shipped config name, config JSON, a folder with
    `model_config.json` (+ `model.pt`, used when `pretrained` is None) or a
    checkpoint with `model_config.json` beside it. `pretrained`: None, a
    checkpoint path or an open_clip tag (cached locally, or downloads allowed).
    """
    _, clip, _, preprocess, tokenizer = create_clip(model, pretrained, device)
    return clip.eval(), preprocess, tokenizer
