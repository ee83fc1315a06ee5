"""The contrastive training loop: AdamW with warmup and cosine decay, open_clip's CLIP loss, resumable state.

As in open_clip_train: no weight decay on gains, biases and the logit scale;
betas (0.9, 0.98), eps 1e-6; the logit scale clamped to ln(100) after each
step; partial batches left out. Every epoch re-seeds torch with (seed, epoch)
and the data stream with (seed, epoch, worker), so a run resumed from the
checkpoint of epoch N continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
from open_clip import ClipLoss
from open_clip_train.scheduler import cosine_lr

from webli.stages.train.data import Batch, StreamCounts

log = logging.getLogger(__name__)

MAX_LOGIT_SCALE = math.log(100)
ADAMW_BETAS = (0.9, 0.98)
ADAMW_EPS = 1e-6


def no_weight_decay(name: str, parameter: torch.nn.Parameter) -> bool:
    """open_clip's rule: gains, biases, norms and the logit scale are not decayed."""
    return parameter.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over two parameter groups: decayed weights and the rest."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if no_weight_decay(n, p)], "weight_decay": 0.0},
              {"params": [p for n, p in named if not no_weight_decay(n, p)], "weight_decay": weight_decay}]
    return torch.optim.AdamW(groups, lr=lr, betas=ADAMW_BETAS, eps=ADAMW_EPS)


def lr_schedule(optimizer: torch.optim.Optimizer, lr: float, warmup_steps: int,
                total_steps: int) -> Callable[[int], float]:
    """open_clip's linear warmup + cosine decay; steps past the planned total stay at the final rate."""
    total_steps = max(total_steps, warmup_steps + 1)
    adjust = cosine_lr(optimizer, lr, warmup_steps, total_steps)
    return lambda step: adjust(min(step, total_steps))


def train_step(model: torch.nn.Module, loss_fn: ClipLoss, optimizer: torch.optim.Optimizer,
               images: torch.Tensor, texts: torch.Tensor) -> float:
    """One optimizer step on one batch; returns the loss before the step."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    image_features, text_features, logit_scale = model(images, texts)[:3]
    loss = loss_fn(image_features, text_features, logit_scale)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return float(loss.detach())


@dataclass
class EpochResult:
    """What one epoch did."""

    epoch: int
    steps: int
    samples: int
    mean_loss: float
    last_lr: float
    seconds: float
    counts: StreamCounts = field(default_factory=StreamCounts)

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        return {"epoch": self.epoch, "steps": self.steps, "samples": self.samples,
                "mean_loss": round(self.mean_loss, 6), "last_lr": self.last_lr, "seconds": round(self.seconds, 3),
                "samples_per_second": round(self.samples_per_second, 2)}


@dataclass
class TrainState:
    """Progress saved in checkpoints: epochs done, optimizer steps, per-epoch summaries, first-epoch counts."""

    epochs_done: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    first_epoch_counts: dict = field(default_factory=dict)
    baseline: dict = field(default_factory=dict)  # held-out metrics before the first step


def seed_epoch(seed: int, epoch: int) -> None:
    """Re-seed torch at each epoch start (augmentations, DataLoader worker seeds)."""
    torch.manual_seed(seed * 100_003 + epoch)


def train_epoch(model: torch.nn.Module, loss_fn: ClipLoss, optimizer: torch.optim.Optimizer,
                schedule: Callable[[int], float], batches: Iterable[Batch], state: TrainState,
                device: torch.device) -> EpochResult:
    """Train on every full batch of one epoch; `state.step` advances with each optimizer step."""
    started = time.perf_counter()
    counts, losses, samples, lr = StreamCounts(), [], 0, 0.0
    for batch in batches:
        counts.add(batch.counts)
        if batch.images is None:
            continue
        lr = schedule(state.step)
        losses.append(train_step(model, loss_fn, optimizer, batch.images.to(device), batch.texts.to(device)))
        samples += len(batch)
        state.step += 1
    mean_loss = sum(losses) / len(losses) if losses else float("nan")
    return EpochResult(state.epochs_done + 1, len(losses), samples, mean_loss, lr, time.perf_counter() - started,
                       counts)


def checkpoint_payload(name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainState,
                       fingerprint: dict) -> dict:
    """open_clip_train's checkpoint layout (`state_dict` loads with create_model_and_transforms) + our state."""
    return {"name": name, "epoch": state.epochs_done, "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(), "train_state": asdict(state), "fingerprint": fingerprint}


def restore(payload: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> TrainState:
    """Load weights and optimizer state from a checkpoint payload; returns the saved progress."""
    model.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(payload["optimizer"])
    return TrainState(**payload["train_state"])


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: Callable[[int], float],
        epoch_batches: Callable[[int], Iterable[Batch]], epochs: int, state: TrainState, seed: int,
        device: torch.device, on_epoch_end: Callable[[TrainState, EpochResult], None]) -> TrainState:
    """Train from `state.epochs_done` to `epochs`; `on_epoch_end` saves checkpoints (it gets the new state)."""
    loss_fn = ClipLoss()
    while state.epochs_done < epochs:
        seed_epoch(seed, state.epochs_done)
        result = train_epoch(model, loss_fn, optimizer, schedule, epoch_batches(state.epochs_done), state, device)
        if state.epochs_done == 0:
            state.first_epoch_counts = result.counts.as_dict()
        state.epochs_done += 1
        state.history.append(result.summary())
        log.info("epoch %d/%d: %d steps, loss %.4f, lr %.2e, %.1f samples/s", result.epoch, epochs, result.steps,
                 result.mean_loss, result.last_lr, result.samples_per_second)
        on_epoch_end(state, result)
    return state
