"""Training target networks with PyTorch Lightning, and the content-addressed cache that keeps them.

A cache entry is one file ``<root>/<task>/<key>.pt`` holding the state dict, plus ``<key>.json`` with
what produced it and the SHA-256 of the ``.pt`` bytes. Both are written to a temporary file and
renamed into place, so a crash never leaves a half-written entry under the final name; an entry whose
checksum, payload or architecture does not match is reported, deleted and retrained, never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hti_bench.clock import Point, stored_form
from hti_bench.harness.fsutil import atomic_write_bytes, default_cache_dir
from hti_bench.task import Task, TrainedTask
from hti_bench.toolkit.training import adam

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # bump when the training procedure changes in a way that should invalidate entries (2: fused Adam)


def cache_key(signature: dict[str, Any], lam: Point, seed: int) -> str:
    blob = json.dumps(
        {"sig": signature, "lam": _lam_text(stored_form(lam)), "seed": int(seed), "format": CACHE_FORMAT},
        sort_keys=True,
        default=repr,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _lam_text(lam: Point | tuple[float, ...]) -> str:
    # A one-axis point keys as its bare float, as one hyperparameter always has (existing caches stay
    # valid); a point of several as the tuple of its floats.
    if isinstance(lam, (tuple, list)):
        return repr(tuple(float(v) for v in lam))
    return repr(float(lam))


def _lam_json(lam: float | tuple[float, ...]) -> float | list[float]:
    return [float(v) for v in lam] if isinstance(lam, (tuple, list)) else float(lam)


class TargetCache:
    """Trained target networks on disk, keyed by (task signature, λ, seed)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.hits = 0
        self.trained = 0
        self.rejected = 0

    def paths(self, task: TrainedTask, lam: Point, seed: int) -> tuple[Path, Path]:
        key = cache_key(task.cache_signature(), lam, seed)
        folder = self.root / task.name
        return folder / f"{key}.pt", folder / f"{key}.json"

    def load(self, task: TrainedTask, lam: Point, seed: int) -> nn.Module | None:
        """The cached network, or None if there is no valid entry (an invalid one is deleted)."""
        payload, meta_path = self.paths(task, lam, seed)
        if not payload.exists() and not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            data = payload.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest != meta.get("sha256"):
                raise ValueError(f"checksum mismatch (file {digest[:12]}…, recorded {str(meta.get('sha256'))[:12]}…)")
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            net = task.build_network()
            net.load_state_dict(state)
        except Exception as err:  # any defect means: do not trust it
            self.rejected += 1
            warnings.warn(
                f"Discarding corrupt target cache entry {payload} ({type(err).__name__}: {err}); retraining.",
                stacklevel=2,
            )
            payload.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            return None
        self.hits += 1
        return net.eval()

    def train_seconds(self, task: TrainedTask, lam: Point, seed: int) -> float:
        """Recorded training time of the cached network at (λ, seed); NaN if unknown."""
        _, meta_path = self.paths(task, lam, seed)
        try:
            return float(json.loads(meta_path.read_text())["train_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            return float("nan")

    def save(self, task: TrainedTask, lam: Point, seed: int, net: nn.Module, info: dict[str, Any]) -> None:
        payload, meta_path = self.paths(task, lam, seed)
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buf)
        data = buf.getvalue()
        meta = {
            "task": task.name,
            "signature": task.cache_signature(),
            "lam": _lam_json(stored_form(lam)),
            "seed": int(seed),
            "sha256": hashlib.sha256(data).hexdigest(),
            "format": CACHE_FORMAT,
            "torch": torch.__version__,
            **info,
        }
        # Payload first: an entry only counts once its metadata (with the checksum) exists.
        atomic_write_bytes(payload, data)
        atomic_write_bytes(meta_path, json.dumps(meta, indent=1, default=repr).encode())

    def get_or_train(self, task: TrainedTask, lam: Point, seed: int) -> nn.Module:
        net = self.load(task, lam, seed)
        if net is not None:
            return net
        # Sweep workers share the cache: the first to need an entry trains it, the others wait on
        # its lock and then load it instead of training the same network again.
        payload, _ = self.paths(task, lam, seed)
        payload.parent.mkdir(parents=True, exist_ok=True)
        with open(payload.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                net = self.load(task, lam, seed)
                if net is not None:
                    return net
                start = time.perf_counter()
                net = task.train_target(lam, seed)
                if net is None:
                    net = train_network(task, lam, seed)
                seconds = time.perf_counter() - start
                self.trained += 1
                self.save(task, lam, seed, net, {"train_seconds": seconds})
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return net.eval()


def target_networks(task: Task) -> list[tuple[Point, int]]:
    """(λ, training seed) of every network a task's units need: anchors, held-out and their seed twins."""
    if not isinstance(task, TrainedTask):
        return []
    seed = int(task.config.model_seed)
    return [(lam, seed) for lam in task.anchors + task.heldout] + [(lam, task.twin_seed) for lam in task.heldout]


def prepare_targets(task: Task, progress: bool = False) -> None:
    """Train (or load) every network a task's units need, through the task's cache."""
    from tqdm.auto import tqdm

    nets = target_networks(task)
    for lam, model_seed in tqdm(nets, desc=f"targets {task.name}", unit="net", leave=False, disable=not progress):
        task.network(lam, seed=model_seed)


def _quiet_lightning() -> None:
    # Lightning announces devices and suggests DataLoader workers on every fit; with dozens of tiny
    # fits per run that drowns the progress bar.
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
    # Lightning 2.6.6 on torch 2.13 uses the deprecated pytree LeafSpec on every step.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)


def train_network(task: TrainedTask, lam: Point, seed: int) -> nn.Module:
    """Train ``task``'s architecture at λ with a Lightning ``Trainer``; returns it in eval mode."""
    import pytorch_lightning as pl

    _quiet_lightning()
    pl.seed_everything(seed, workers=True, verbose=False)
    net = task.build_network()
    data = task.training_data()
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*data),
        batch_size=task.config.batch_size,
        shuffle=True,
        generator=gen,
    )
    module = _TargetModule(net, task, lam)
    trainer = pl.Trainer(
        max_epochs=task.config.epochs,
        accelerator=task.config.accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=loader)
    return net.cpu().eval()


def _lightning_module_class() -> type:
    import pytorch_lightning as pl

    class TargetModule(pl.LightningModule):
        """Wraps a task's network and per-example loss at one fixed λ."""

        def __init__(self, network: nn.Module, task: TrainedTask, lam: Point) -> None:
            super().__init__()
            self.network = network
            self._task = task
            # Per-example λ as the loss takes it: (B,) for one hyperparameter, (B, d) for several.
            self._lam = torch.as_tensor(stored_form(lam), dtype=torch.float32)

        def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
            lam = self._lam.to(batch[0].device).expand(batch[0].shape[0], *self._lam.shape).contiguous()
            loss = self._task.per_example_loss(self.network, batch, lam).mean()
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return adam(self.network.parameters(), self._task.config.lr)

    return TargetModule


def _TargetModule(network: nn.Module, task: TrainedTask, lam: Point) -> Any:
    # Built lazily so that importing hti_bench does not import Lightning (a slow import).
    global _TARGET_MODULE
    if _TARGET_MODULE is None:
        _TARGET_MODULE = _lightning_module_class()
    return _TARGET_MODULE(network, task, lam)


_TARGET_MODULE: type | None = None
