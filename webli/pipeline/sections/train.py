"""train: the bundled reference CLIP trainer, and the bootstrap filter it trains for the score stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from webli.pipeline.sections.base import Section


class ZeroShotSetConfig(Section):
    """A labelled eval set for zero-shot accuracy: an image folder with one sub-folder per class."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_\-]+$", description="key of its metrics")
    images: str = Field(..., description="folder of class sub-folders (ImageFolder layout); names are the classes")
    templates: list[str] = Field(default_factory=lambda: ["a photo of a {}.", "{}"],
                                 description="prompt templates, '{}' replaced by the class name")


class BootstrapFilterConfig(Section):
    """The offline filters: K models cross-fitted on a bootstrap split of the downloaded pairs (Data Filtering
    Networks: train a filter, then filter), each pair scored by the one that never trained on it."""

    model: str = Field("webli-tiny", description="open_clip model name or model config JSON")
    fraction: float = Field(1.0, gt=0, le=1, description="share of the downloaded pairs (by uid hash) in the "
                                                         "bootstrap split; the rest are 'unused' in splits.parquet")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="share of each fold held out for its filter's AUC")
    folds: int = Field(2, ge=2, description="cross-fitting: K filters, filter k trained on the pairs not in fold k "
                                            "(by uid hash); each pair is scored by the filter of its fold, which "
                                            "never trained on it")
    epochs: int = Field(10, ge=1)


class TrainConfig(Section):
    """What the reference trainer trains, on which shards, and how."""

    model: str = Field("webli-tiny", description="open_clip model name, model config JSON path, or a folder "
                                                 "holding model_config.json")
    pretrained: str | None = Field(None, description="initial weights: checkpoint path or open_clip tag")
    data: str = Field("select", description="'select' (final shards), 'download', or a shard glob (any fsspec URL)")
    eval_fraction: float = Field(0.05, ge=0, lt=1, description="pairs held out (by uid hash) for evaluation")
    compare_random: bool = Field(True, description="with data 'select': also train on a random subset of the "
                                                   "downloaded pairs of the same size, and evaluate both on the "
                                                   "same held-out pairs (train/comparison.json)")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.2, ge=0)
    warmup_steps: int = Field(50, ge=0, description="linear warmup, then cosine decay to 0")
    seed: int = 0
    shuffle_buffer: int = Field(2000, ge=1, description="samples in the shuffle buffer of each loader worker")
    workers: int = Field(1, ge=0, description="DataLoader worker processes (0: load in the training process)")
    threads: int | None = Field(None, ge=1, description="torch threads for the model (default: the cores left "
                                                        "to it, cluster.workers - workers, at least 1)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto': CUDA when present")
    keep_checkpoints: int = Field(1, ge=1, description="epoch checkpoints kept (the newest), for resuming")
    zero_shot: list[ZeroShotSetConfig] = Field(default_factory=list)
    bootstrap: BootstrapFilterConfig = Field(default_factory=BootstrapFilterConfig)
