"""``tensor``: any HTI data set in the paper's ``[T, N, D + C]`` layout, from a ``.npz`` or ``.pt`` file.

How users bring their own networks' outputs, and how the paper's published data is run:
``hti-bench run -t "tensor[path=moons_dropout.npz,anchors=(0.0,0.5,0.99)]"``.

The file holds ``data`` (T × N × (D + C): for each of T increasing λ values, N rows of
[output y (D) | condition x (C)]), and optionally ``lambdas`` (T) and ``y_dim`` (D); a ``.pt`` file may
also be a bare tensor. Options given in the spec override the file. The condition rows must be the
same at every λ (the paper's convention); rows with identical x form one condition, whose outputs at
λ are the sample set p(y | x, λ). Anchors default to the first, middle and last λ, held-out values to
every other λ between the first and last anchor.

With ``score_rows`` (and optionally ``fit_rows``), the task is *inductive*: surrogates get the anchor
outputs of the fit rows only and are scored at the conditions of the score rows, which they never saw
(the paper's forecasting protocol, e.g. ``fit_rows=:1200,score_rows=-180:``); the two row sets must
not share a condition.

Samples at λ are rows of the stored set, drawn without replacement (all of them by default), so the
surrogate is scored against the stored outputs themselves. The finite-sample floor compares the
stored set with a bootstrap resample of itself (two disjoint draws are impossible when the whole set
is the reference). There is no network and no loss: best-response surrogates skip this task.

Several hyperparameters: ``lambdas`` of shape (T, d) makes each slice a point of a d-axis box (axes
named by ``axes``, each spanning the file's values, ``clock`` one name or one per axis, comma
separated); points need only be distinct. Anchors default to the points at the corners of the
points' convex hull, held-out points to every other point inside it. A spec gives points as tuples:
``anchors=((0,0),(1,0),(0,1),(1,1))``.
"""

from __future__ import annotations

import dataclasses
import math
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from hti_bench.clock import Clock, Hyperparameter, HyperparameterSpace, Point, as_point, stored_form
from hti_bench.errors import ConfigError
from hti_bench.task import Task, TaskConfig, option


@dataclasses.dataclass(frozen=True)
class TensorConfig(TaskConfig):
    path: str = option("", "The .npz or .pt file (required).")
    y_dim: int = option(0, "Output dimension D; 0 = the file's y_dim.")
    lambdas: tuple = option((), "The T λ values (or T points of d values); empty = the file's.")
    clock: str = option(
        "identity",
        "λ's clock: identity, log or logit (several hyperparameters: one, or one per axis, comma separated).",
    )
    axes: str = option(
        "", "Names of λ's d axes, comma separated, for a file of d-dimensional λ (default lambda1, lambda2, …)."
    )
    rows: int = option(0, "Use only the first `rows` rows of each λ (0 = all).")
    categorical: str = option("auto", "Whether x is one class-id column: auto, yes or no.")
    n_samples: int = option(0, "Samples per condition; 0 = every stored row of the smallest condition.", cache=False)
    score_rows: str = option(
        "",
        "Inductive mode: the file rows whose conditions are scored, as start:stop (Python "
        "slice, e.g. -180: for the last 180); empty = every condition, transductive.",
        cache=False,
    )
    fit_rows: str = option(
        "",
        "Inductive mode: the file rows the anchor data covers, as start:stop (e.g. :1200); "
        "empty = every row not scored.",
        cache=False,
    )


class TensorTask(Task):
    name: ClassVar[str] = "tensor"
    description: ClassVar[str] = "Your own HTI data: a [T, N, D+C] tensor (.npz/.pt) of outputs at T values of λ."
    Config = TensorConfig
    in_default_suite: ClassVar[bool] = False
    capability_notes: ClassVar[dict[str, str]] = {
        "training_loss": "stored outputs, with no network or loss",
        "architecture": "stored outputs, with no network or loss",
    }

    def _validate_lambdas(self) -> None:
        self._load()  # a malformed file is reported before anything runs
        if not self.heldout:
            raise self._fail(
                f"its λ values {list(self._lambdas)} are all anchors ({list(self.anchors)}): there is no held-out "
                "output to score against. Choose fewer anchors (anchors=(…)) if the file holds more values."
            )
        super()._validate_lambdas()
        for lam in self.anchors + self.heldout + self.validation:
            self.index_of_lambda(lam)
        if self.config.fit_rows and not self.config.score_rows:
            raise self._fail("fit_rows needs score_rows too (the inductive mode scores the score rows' conditions)")
        if self.mode == "inductive" and self.fit_conditions().shape[0] == 0:
            raise self._fail(f"fit_rows={self.config.fit_rows!r} leaves no condition outside score_rows to fit on")

    # ------------------------------------------------------------------ the file

    def _fail(self, problem: str) -> ConfigError:
        return ConfigError(f"task 'tensor': {self.config.path or '(no path)'}: {problem}")

    def _load(self) -> None:
        c = self.config
        if not c.path:
            raise ConfigError("task 'tensor' needs path=FILE (a .npz or .pt file in the [T, N, D+C] layout)")
        file = Path(c.path).expanduser()
        if not file.is_file():
            raise self._fail("no such file")
        raw = _read(file, self._fail)
        data = raw.get("data")
        if data is None:
            raise self._fail(f"no 'data' array (found: {', '.join(sorted(raw)) or 'nothing'})")
        data = torch.as_tensor(np.asarray(data), dtype=torch.float32)
        if data.ndim != 3:
            raise self._fail(f"wrong rank: 'data' must be [T, N, D+C], got shape {tuple(data.shape)}")
        if c.rows:
            data = data[:, : int(c.rows)]
        bad = int((~torch.isfinite(data)).sum())
        if bad:
            raise self._fail(f"'data' has {bad} non-finite values (NaN or inf)")
        lambdas = self._read_lambdas(c.lambdas if c.lambdas else raw.get("lambdas", []), data.shape[0])
        if c.y_dim:
            y_dim = int(c.y_dim)
        elif "y_dim" in raw:
            y_dim = int(np.asarray(raw["y_dim"]).reshape(-1)[0])
        else:
            y_dim = 0
        width = data.shape[2]
        if not 1 <= y_dim < width:
            raise self._fail(
                f"y_dim must be between 1 and {width - 1} (data rows have D + C = {width} columns and need ≥ 1 condition "
                f"column), got {y_dim or 'none'}: set y_dim=D"
            )
        x = data[0, :, y_dim:]
        if not all(torch.equal(data[t, :, y_dim:], x) for t in range(1, data.shape[0])):
            raise self._fail("the condition columns differ between λ values; every λ must hold the same x rows")
        self._data, self._lambdas, self._y_dim = data, lambdas, y_dim
        self._x_unique, self._group = torch.unique(x, dim=0, return_inverse=True)
        sizes = torch.bincount(self._group)
        self._min_group = int(sizes.min())
        n = int(c.n_samples)
        if n < 0:
            raise self._fail(f"n_samples must be ≥ 0, got {n}")

    def _read_lambdas(self, values: Any, n_slices: int) -> tuple:
        """The file's (or the spec's) λ: T increasing floats, or T distinct points of d values."""
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise self._fail(f"λ values must be T numbers or T points of d numbers each, got {values!r}") from None
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.size == 0:
            raise self._fail("no λ values: the file has no 'lambdas' and none were given (lambdas=(…))")
        if arr.ndim not in (1, 2):
            raise self._fail(f"'lambdas' must have shape (T,) or (T, d), got {arr.shape}")
        if arr.shape[0] != n_slices:
            raise self._fail(f"{arr.shape[0]} λ values but 'data' has T = {n_slices} slices")
        if not np.isfinite(arr).all():
            raise self._fail(f"λ values must be finite, got {arr.tolist()}")
        if arr.ndim == 1:  # the file's (T,) form: the values of one hyperparameter, on a line
            values = tuple(float(v) for v in arr)
            if any(b <= a for a, b in zip(values, values[1:])):
                raise self._fail(f"λ values must be finite and strictly increasing, got {values}")
            return tuple((v,) for v in values)
        points = tuple(tuple(float(v) for v in row) for row in arr)
        if len(set(points)) != len(points):
            raise self._fail(
                f"λ points must be distinct: {next(p for p in points if points.count(p) > 1)} appears more than once"
            )
        for j in range(arr.shape[1]):
            if arr[:, j].min() == arr[:, j].max():
                raise self._fail(f"axis {j + 1} of λ takes one value ({arr[0, j]}) in every slice: drop it")
        return points

    @property
    def _file_d(self) -> int:
        return len(self._lambdas[0])

    @property
    def anchors(self) -> tuple:
        if self.config.anchors:
            return self._points(self.config.anchors, "anchors")
        lams = self._lambdas
        if self._file_d == 1:  # a line's hull is its two ends (qhull has no 1-D hull): they and the middle value
            return (lams[0], lams[len(lams) // 2], lams[-1]) if len(lams) > 2 else tuple(lams)
        return tuple(lams[i] for i in self._hull_corners())

    def _hull_corners(self) -> list[int]:
        """Indices of the file's points at the corners of their convex hull (unit clock time), in file order."""
        from scipy.spatial import ConvexHull, QhullError

        unit = np.array([self.hyperparameters.to_unit(p) for p in self._lambdas])
        try:
            return sorted(int(i) for i in ConvexHull(unit).vertices)
        except QhullError:
            raise self._fail(
                "its λ points lie in a lower-dimensional subspace (no hull to interpolate in); "
                "drop the redundant axis or give anchors=(…)"
            ) from None

    @property
    def heldout(self) -> tuple:
        if self.config.heldout:
            return self._points(self.config.heldout, "heldout")
        taken = self.anchors + self.validation
        return tuple(p for p in self._lambdas if not any(_same(p, a) for a in taken) and self._inside_hull(p))

    @property
    def n_samples(self) -> int:
        return int(self.config.n_samples) or self._min_group

    def index_of_lambda(self, lam: float | Point) -> int:
        point = as_point(lam)
        for i, v in enumerate(self._lambdas):
            if len(point) == self._file_d and _same(v, point):
                return i
        values = tuple(stored_form(v) for v in self._lambdas)  # as the user writes them
        raise ConfigError(f"task 'tensor': λ={stored_form(point)} is not one of the file's values {values}")

    # ------------------------------------------------------------------ the task contract

    @cached_property
    def hyperparameters(self) -> HyperparameterSpace:
        d = self._file_d
        names = (
            [n.strip() for n in self.config.axes.split(",")]
            if self.config.axes
            else [f"lambda{j + 1}" for j in range(d)]
            if d > 1
            else ["lambda"]
        )
        clocks = [c.strip() for c in self.config.clock.split(",")]
        if len(names) != d or len(clocks) not in (1, d):
            raise self._fail(
                f"its λ has {d} axes, so axes needs {d} names (got {self.config.axes!r}) and clock "
                f"one clock or {d} (got {self.config.clock!r})"
            )
        clocks = clocks * d if len(clocks) == 1 else clocks
        columns = list(zip(*self._lambdas))
        try:
            return HyperparameterSpace(
                tuple(
                    Hyperparameter(name, min(col), max(col), Clock.parse(clock))
                    for name, col, clock in zip(names, columns, clocks)
                )
            )
        except (ConfigError, ValueError) as err:
            raise self._fail(str(err)) from None

    @property
    def output_dim(self) -> int:
        return self._y_dim

    @property
    def condition_dim(self) -> int:
        return int(self._data.shape[2] - self._y_dim)

    @property
    def categorical(self) -> bool:  # type: ignore[override]
        choice = self.config.categorical
        if choice not in ("auto", "yes", "no"):
            raise ConfigError(f"task 'tensor': categorical must be auto, yes or no, got {choice!r}")
        if choice != "auto":
            return choice == "yes"
        x = self._x_unique
        return x.shape[1] == 1 and bool(torch.equal(x, x.round())) and x.shape[0] <= 64

    @property
    def mode(self) -> str:
        return "inductive" if self.config.score_rows else "transductive"

    def _row_range(self, key: str) -> np.ndarray:
        """The file rows (indices into N) an inductive ``fit_rows``/``score_rows`` option selects."""
        text = str(getattr(self.config, key)).strip()
        n = self._data.shape[1]
        parts = text.split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            start, stop = (int(p) if p.strip() else None for p in parts)
        except ValueError:
            raise self._fail(f"{key}={text!r} is not a row range start:stop (e.g. :1200 or -180:)") from None
        rows = np.arange(n)[slice(start, stop)]
        if rows.size == 0:
            raise self._fail(f"{key}={text!r} selects no row of the file's {n}")
        return rows

    def _groups_of(self, rows: np.ndarray) -> Tensor:
        return torch.unique(self._group[torch.as_tensor(rows)])

    def eval_conditions(self) -> Tensor:
        if self.mode == "inductive":
            return self._x_unique[self._groups_of(self._row_range("score_rows"))].clone()
        return self._x_unique.clone()

    def fit_conditions(self) -> Tensor:
        if self.mode != "inductive":
            return torch.empty(0, self.condition_dim)
        scored = self._groups_of(self._row_range("score_rows"))
        if self.config.fit_rows:
            fit = self._groups_of(self._row_range("fit_rows"))
        else:
            fit = torch.as_tensor(np.setdiff1d(np.arange(self._x_unique.shape[0]), scored.numpy()))
        shared = np.intersect1d(fit.numpy(), scored.numpy())
        if shared.size:
            raise self._fail(
                f"fit_rows and score_rows share {shared.size} condition(s) (e.g. x = "
                f"{self._x_unique[int(shared[0])].tolist()}): an inductive score needs conditions the "
                "surrogates never saw"
            )
        return self._x_unique[fit].clone()

    def _rows(self, lam: Point, conditions: Tensor) -> list[Tensor]:
        t = self.index_of_lambda(lam)
        out = []
        for row in torch.as_tensor(conditions, dtype=torch.float32):
            match = (self._x_unique == row).all(dim=1).nonzero()
            if match.numel() == 0:
                raise ValueError(f"condition {row.tolist()} is not one of the file's x rows")
            out.append(self._data[t, self._group == int(match[0, 0]), : self._y_dim])
        return out

    def sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor:
        gen = torch.Generator().manual_seed(int(seed))
        out = []
        for ys in self._rows(lam, conditions):
            if n > ys.shape[0]:
                raise ValueError(f"{n} samples asked, the file has {ys.shape[0]} rows for a condition at λ={lam}")
            out.append(ys[torch.randperm(ys.shape[0], generator=gen)[:n]])
        return torch.stack(out)

    def floor_sample(self, lam: Point, conditions: Tensor, n: int, seed: int) -> Tensor:
        gen = torch.Generator().manual_seed(int(seed))
        return torch.stack(
            [ys[torch.randint(0, ys.shape[0], (n,), generator=gen)] for ys in self._rows(lam, conditions)]
        )


def _same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b, strict=True))


def _read(file: Path, fail: Any) -> dict[str, Any]:
    suffix = file.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(file, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if suffix in (".pt", ".pth"):
            obj = torch.load(file, map_location="cpu", weights_only=True)
            if isinstance(obj, Tensor):
                return {"data": obj.numpy()}
            if isinstance(obj, dict):
                return {k: (v.numpy() if isinstance(v, Tensor) else v) for k, v in obj.items()}
            raise fail(f"holds a {type(obj).__name__}; expected a tensor or a dict with 'data'")
    except ConfigError:
        raise
    except Exception as err:
        raise fail(f"cannot be read ({type(err).__name__}: {err})") from None
    raise fail(f"unknown file type {suffix!r}; use .npz or .pt")


def read_per_class(path: str | Path) -> tuple[Tensor, list[float], Tensor]:
    """The HTI paper's published data files (``data`` [T, N, D + 1] with one class-label column,
    ``lambdas``, ``y_dim``) split per class: outputs (T, classes, n, D), the λ values and the sorted
    class labels (classes, 1). For the reproduction and benchmark scripts; the ``tensor`` task reads
    the general [T, N, D + C] layout with full checks."""
    z = np.load(path)
    data, lams, d = torch.tensor(z["data"]).float(), [float(v) for v in z["lambdas"]], int(z["y_dim"])
    if data.ndim != 3 or data.shape[2] != d + 1:
        raise ConfigError(f"{path}: expected data [T, N, D + 1] with one class column, got {tuple(data.shape)}")
    labels = data[0, :, d]
    classes = sorted(set(labels.tolist()))
    per_class = torch.stack([torch.stack([data[t, labels == c, :d] for c in classes]) for t in range(len(lams))])
    return per_class, lams, torch.tensor(classes)[:, None]
