"""The results store: a long, tidy table with a versioned schema (the leaderboard is computed from it, in
:mod:`hti_bench.harness.leaderboard`).

One row per (task, surrogate, seed, held-out λ). Each finished (task, surrogate, seed) unit is written
as its own CSV file under ``<results>/runs/`` by an atomic rename, so an interrupted run loses at most
the unit in progress and never leaves half a file; re-running skips units already stored. Reading
merges every file and drops duplicate natural keys keeping the newest row, so nothing is double-counted.
``results.csv`` (the merged table), ``leaderboard.csv`` and one ``leaderboard_<task>.csv`` per task are
regenerated from the run files; never edit them by hand. For tasks with 2-D outputs, a unit may also
store a few sample clouds under ``<results>/samples/`` (same digest as its run file) for the figures of
:mod:`hti_bench.harness.plots`.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hti_bench.clock import as_point
from hti_bench.errors import ResultsError
from hti_bench.harness.fsutil import atomic_write_bytes
from hti_bench.harness.leaderboard import leaderboard

SCHEMA_VERSION = 8

#: Columns each schema version added. Version 2: the anchors' training cost and the seed-to-seed floor;
#: version 3: the task's anchors and clock (so figures never rebuild a task); version 4: the track
#: (default or tuned) and what tuning chose and cost; version 5: the rest of the metric panel (energy
#: distance, MMD, sliced W₂) with its floors; version 6: the scoring mode (transductive or inductive), the closed
#: loop's cost and why a metric is missing; version 7: several hyperparameters (the dimension d, the held-out point
#: as text, and its distance from the nearest anchor); version 8: whether the surrogate ran sealed.
_ADDED: dict[int, tuple[str, ...]] = {
    2: ("anchor_train_seconds", "seed_floor_w1", "seed_floor_w2", "seed_floor_w2sq"),
    3: ("anchors", "clock"),
    4: ("track", "config", "tuning_trials", "tuning_fit_seconds", "tuning_score"),
    5: (
        "energy",
        "mmd",
        "sw2",
        "mmd_bandwidth",
        "floor_energy",
        "floor_mmd",
        "floor_sw2",
        "seed_floor_energy",
        "seed_floor_mmd",
        "seed_floor_sw2",
    ),
    6: ("mode", "closed_loop_seconds", "metric_note"),
    7: ("d", "lambda_point", "anchor_distance"),
    8: ("sealed",),
}


#: How to read a file of an older schema: version → (columns it lacks, filled with NaN).
_UPGRADES: dict[int, tuple[str, ...]] = {
    old: tuple(col for version, cols in sorted(_ADDED.items()) if version > old for col in cols)
    for old in range(1, SCHEMA_VERSION)
}

#: Separator of the ``anchors`` column: the anchor λ values as ``repr`` of floats joined by it.
ANCHOR_SEP = ";"

#: Separator of a point's coordinates inside the ``anchors`` column (several hyperparameters): ``0.0:1.0;0.5:0.5``.
COORD_SEP = ":"


def format_anchors(anchors: Iterable[Any]) -> str:
    """The ``anchors`` column of a row: ``repr`` of each λ as a float joined by ``;``, in the task's
    order, e.g. ``0.0;0.5;0.99`` (``repr`` round-trips a float exactly; ``;`` never occurs in one and
    is not the CSV separator); each point's coordinates joined by ``:``, ``0.0:1.0;0.5:0.5`` (a point
    of one hyperparameter is its one value).
    No anchors give the empty string."""
    return ANCHOR_SEP.join(COORD_SEP.join(repr(v) for v in as_point(a)) for a in anchors)


def parse_anchors(text: Any) -> tuple[Any, ...]:
    """The anchor λ values of an ``anchors`` cell (inverse of :func:`format_anchors`): floats, or
    tuples of floats for points of several hyperparameters. An empty cell (``""``, ``None`` or NaN: a file of schema version < 3)
    gives ``()``; a cell that is not floats joined by ``;`` raises :class:`~hti_bench.errors.ResultsError`."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ()
    text = str(text).strip()
    if not text:
        return ()
    try:
        if COORD_SEP in text:
            return tuple(tuple(float(v) for v in part.split(COORD_SEP)) for part in text.split(ANCHOR_SEP))
        return tuple(float(part) for part in text.split(ANCHOR_SEP))
    except ValueError:
        raise ResultsError(
            f"Malformed anchors {text!r}: expected λ values joined by {ANCHOR_SEP!r}, e.g. 0.0;0.5;1.0."
        ) from None


#: The natural key: at most one row per key survives a merge.
KEY = ("task", "track", "surrogate", "seed", "lambda_heldout")

#: Column → meaning. Task metrics add ``metric_<name>`` (of the surrogate's samples) and
#: ``ref_metric_<name>`` (of the held-out network's own samples, for reading the former).
COLUMNS: dict[str, str] = {
    "task": "Task name with non-default options, e.g. moons-dropout[epochs=250].",
    "track": "default (the surrogate as named) or tuned (its configuration chosen by hti-bench tune on the "
    "anchors only, then refitted on all anchors); default in files of schema version < 4.",
    "surrogate": "Surrogate name with its parameters, e.g. mccann; on the tuned track, the name tuning started "
    "from (its parameters stay fixed).",
    "config": "The surrogate configuration actually fitted: the surrogate name on the default track, the chosen "
    "one (clock included) on the tuned track.",
    "seed": "Run seed: anchor and reference sample draws, surrogate fit and sampling.",
    "lambda_heldout": "Held-out λ the row scores; on a task of several hyperparameters, the point's index in the "
    "task's held-out list (the point itself is in lambda_point and the lambda_<axis> columns).",
    "hyperparameter": "Name of λ (dropout, t, tau, …); for several hyperparameters the axes' names joined by ';'.",
    "d": "How many hyperparameters λ has (1 in files of schema version < 7).",
    "lambda_point": "The held-out λ as text: repr of each coordinate joined by ';' (for one hyperparameter, repr of "
    "lambda_heldout, also in files of schema version < 7).",
    "anchor_distance": "Distance from the held-out λ to the nearest anchor in unit clock time (each axis's clock "
    "time rescaled so that its range spans [0, 1]); NaN in files of schema version < 7.",
    "anchors": "The task's anchor λ values: repr of each as a float, joined by ';' (e.g. 0.0;0.5;0.99; "
    "read back with hti_bench.harness.results.parse_anchors); empty in files of schema version < 3.",
    "clock": "The clock λ is interpolated on: identity, log or logit (for several hyperparameters each axis's, joined by ';'); "
    "empty in files of schema version < 3.",
    "mode": "transductive (the anchor data covers the scored conditions) or inductive (surrogates fitted on other "
    "conditions and scored on conditions they never saw; the task name carries the option, so the leaderboard never "
    "mixes the two); transductive in files of schema version < 6.",
    "status": "ok, failed (see error) or skipped (see error for the reason).",
    "error": "Why the row failed or was skipped; empty when ok.",
    "w1": "Mean over conditions of W₁(surrogate samples, held-out network samples).",
    "w2": "Mean over conditions of W₂.",
    "w2sq": "Mean over conditions of W₂² (the HTI paper's 'W.D.').",
    "energy": "Mean over conditions of the energy distance 2E‖X−Y‖ − E‖X−X′‖ − E‖Y−Y′‖ of the two empirical "
    "measures (every pair counted); NaN in files of schema version < 5.",
    "mmd": "Mean over conditions of the Gaussian-kernel MMD (√MMD², every pair counted), bandwidth `mmd_bandwidth`.",
    "sw2": "Mean over conditions of sliced W₂ (128 fixed random directions, exact 1-D W₂ each); only for outputs "
    "with D > 8, NaN otherwise.",
    "mmd_bandwidth": "Mean over conditions of the MMD kernel's bandwidth h: the median distance between two of the "
    "held-out network's samples (the median heuristic; pooled samples where that is 0).",
    "floor_w1": "Noise floor: W₁ between two independent sample sets of the held-out network.",
    "floor_w2": "Noise floor for W₂.",
    "floor_w2sq": "Noise floor for W₂².",
    "seed_floor_w1": "Seed-to-seed floor: W₁ between the held-out network and a second one trained at the same λ "
    "with another seed (model_seed + 1); NaN for tasks without training randomness.",
    "seed_floor_w2": "Seed-to-seed floor for W₂.",
    "seed_floor_w2sq": "Seed-to-seed floor for W₂².",
    "floor_energy": "Noise floor for the energy distance.",
    "floor_mmd": "Noise floor for MMD.",
    "floor_sw2": "Noise floor for sliced W₂ (NaN for D ≤ 8).",
    "seed_floor_energy": "Seed-to-seed floor for the energy distance.",
    "seed_floor_mmd": "Seed-to-seed floor for MMD.",
    "seed_floor_sw2": "Seed-to-seed floor for sliced W₂.",
    "n_conditions": "Conditions scored.",
    "n_samples": "Samples per condition, on each side.",
    "fit_seconds": "Wall time of fit() for this seed (the same on every λ row of the unit).",
    "sample_seconds": "Wall time of sample() at this λ for all conditions.",
    "closed_loop_seconds": "Closed-loop tasks: wall time of the closed-loop episodes the surrogate drove at this λ; "
    "NaN elsewhere and in files of schema version < 6.",
    "metric_note": "Why a task metric is missing from an ok row (e.g. the closed-loop return of a surrogate that "
    "cannot answer at states the anchor networks were not run on); empty otherwise.",
    "uses_training_loss": "Whether the surrogate trains on the task's loss (best-response methods).",
    "sealed": "Whether the surrogate ran sealed: in a confined sandbox process that holds nothing of the held-out "
    "λ, their networks or the scorer (false with --unsealed, where the system offers no confinement, and in files "
    "of schema version < 8).",
    "anchor_train_seconds": "Wall time spent training the task's anchor networks (sum over anchors, from the "
    "target cache; NaN for tasks that train nothing): what every surrogate's fit builds on, beside fit_seconds.",
    "tuning_trials": "Tuned track: configurations tried (each scored on the validation folds); NaN on the default track.",
    "tuning_fit_seconds": "Tuned track: total fit() seconds of every trial on every validation fold and tuning seed "
    "(the tuning cost, beyond the final fit); NaN on the default track.",
    "tuning_score": "Tuned track: the chosen configuration's validation score (mean W₂ over the validation folds "
    "and tuning seeds; never a held-out λ); NaN on the default track.",
    "hti_bench_version": "Package version that produced the row.",
    "git_rev": "Git revision of the project (with -dirty for uncommitted changes), or unknown.",
    "torch_version": "torch.__version__.",
    "device": "cpu or cuda.",
    "run_date": "UTC time the unit finished (ISO 8601); the newest row wins a merge.",
    "schema_version": "Version of this schema.",
}

_TEXT_COLUMNS = {
    c: str
    for c in (
        "task",
        "track",
        "surrogate",
        "config",
        "hyperparameter",
        "status",
        "error",
        "anchors",
        "clock",
        "git_rev",
        "run_date",
        "metric_note",
        "mode",
        "lambda_point",
    )
}
_FLOAT_COLUMNS = (
    "lambda_heldout",
    "w1",
    "w2",
    "w2sq",
    "floor_w1",
    "floor_w2",
    "floor_w2sq",
    "fit_seconds",
    "sample_seconds",
    "seed_floor_w1",
    "seed_floor_w2",
    "seed_floor_w2sq",
    *_ADDED[5],  # the rest of the metric panel, its floors and the MMD bandwidth: all numbers
    "anchor_train_seconds",
    "closed_loop_seconds",
    "anchor_distance",
    "d",
    "tuning_trials",
    "tuning_fit_seconds",
    "tuning_score",
)


def unit_digest(task: str, surrogate: str, seed: int, track: str = "default") -> str:
    """The stable name of a (task, surrogate, seed[, track]) unit's files: its run CSV and its sample
    clouds (default-track names are those of schema versions < 4)."""
    blob = f"{task}\x00{surrogate}\x00{int(seed)}" + ("" if track == "default" else f"\x00{track}")
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


def unit_filename(task: str, surrogate: str, seed: int, track: str = "default") -> str:
    return f"{unit_digest(task, surrogate, seed, track)}.csv"


_UNSAFE = re.compile(r"[^a-zA-Z0-9._=-]+")


def safe_name(name: str, max_len: int = 80) -> str:
    """A file-name-safe, stable and readable form of a task (or any) name.

    Characters outside ``[a-zA-Z0-9._=-]`` become ``_`` (a run of them, one ``_``; none at either end).
    When that changed anything, or the name is empty, only dots or longer than ``max_len``, a short
    hash of the original is appended (``-`` + 8 hex digits), so different names never share a file:
    ``moons-dropout`` stays ``moons-dropout``; ``tensor[path=../x.npz]`` becomes
    ``tensor_path=.._x.npz-<hash>``.
    """
    safe = _UNSAFE.sub("_", name).strip("_")
    if safe == name and name.strip(".") and len(name) <= max_len:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{safe[:max_len]}-{digest}"


#: What a unit's ``samples`` dict holds (filled by :func:`hti_bench.harness.runner.evaluate_unit`, stored by
#: :meth:`ResultsStore.write_samples`): arrays ``surrogate`` and ``reference`` (float32, [m, n, 2]),
#: ``conditions`` ([m, C]), ``lam`` (the held-out λ they were drawn at), and strings ``task``,
#: ``surrogate_spec``, ``hyperparameter`` and the int ``seed``.
SAMPLE_KEYS = ("task", "surrogate_spec", "seed", "hyperparameter", "lam", "conditions", "surrogate", "reference")


class ResultsStore:
    """A results folder: ``runs/*.csv`` (one per unit), ``samples/*.npz`` (2-D tasks' sample clouds),
    ``results.csv``, ``leaderboard.csv`` and ``leaderboard_<task>.csv``."""

    def __init__(self, root: str | Path = "results") -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.samples = self.root / "samples"

    # ------------------------------------------------------------------ units

    def unit_path(self, task: str, surrogate: str, seed: int, track: str = "default") -> Path:
        return self.runs / unit_filename(task, surrogate, seed, track)

    def has_unit(self, task: str, surrogate: str, seed: int, track: str = "default") -> bool:
        """True if a complete unit is stored whose rows are all ok or skipped (failures are retried)."""
        path = self.unit_path(task, surrogate, seed, track)
        if not path.exists():
            return False
        try:
            df = self._read(path)
        except ResultsError:
            return False
        return bool(len(df)) and bool(df["status"].isin(["ok", "skipped"]).all())

    def read_unit(self, task: str, surrogate: str, seed: int, track: str = "default") -> pd.DataFrame | None:
        """The stored rows of one unit, or None if it is not stored (or unreadable)."""
        path = self.unit_path(task, surrogate, seed, track)
        if not path.exists():
            return None
        try:
            return self._read(path)
        except ResultsError:
            return None

    def write_unit(self, rows: Sequence[dict[str, Any]], samples: dict[str, Any] | None = None) -> Path:
        """Store one unit's rows atomically; they must share task, surrogate and seed. Returns the run file.

        ``samples`` is the dict :func:`hti_bench.harness.runner.evaluate_unit` filled (see :data:`SAMPLE_KEYS`):
        when given, it is stored too by :meth:`write_samples` (an empty dict removes the unit's stale
        cloud). Sample clouds are extras for figures: failing to write them warns and never fails the
        unit. ``None`` leaves the samples folder alone.
        """
        path = self._write_rows(rows)
        if samples is not None:
            task, surrogate, seed = rows[0]["task"], rows[0]["surrogate"], int(rows[0]["seed"])
            try:
                if samples:
                    self.write_samples(samples)
                else:
                    self.samples_path(task, surrogate, seed).unlink(missing_ok=True)
            except Exception as err:  # figures are optional; the scores are stored already
                warnings.warn(f"sample clouds of {task} {surrogate} seed={seed} not stored: {err}", stacklevel=2)
        return path

    def _write_rows(self, rows: Sequence[dict[str, Any]]) -> Path:
        if not rows:
            raise ValueError("a unit has at least one row")
        idents = {(r["task"], r["surrogate"], int(r["seed"]), str(r.get("track") or "default")) for r in rows}
        if len(idents) != 1:
            raise ValueError(f"rows of one unit must share task, surrogate, seed and track, got {sorted(idents)}")
        df = pd.DataFrame(list(rows))
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"rows lack schema columns: {missing}")
        path = self.unit_path(*idents.pop())
        atomic_write_bytes(path, df.to_csv(index=False).encode())
        return path

    # ------------------------------------------------------------------ sample clouds

    def samples_path(self, task: str, surrogate: str, seed: int) -> Path:
        return self.samples / f"{unit_digest(task, surrogate, seed)}.npz"

    def write_samples(self, samples: dict[str, Any]) -> Path:
        """Store a unit's sample clouds (keys :data:`SAMPLE_KEYS`) atomically as ``samples/<digest>.npz``.
        Raises on a malformed dict or a failed write; :meth:`write_unit` turns that into a warning."""
        missing = [k for k in SAMPLE_KEYS if k not in samples]
        if missing:
            raise ValueError(f"sample clouds lack keys {missing}")
        arrays = {
            "task": np.asarray(str(samples["task"])),
            "surrogate_spec": np.asarray(str(samples["surrogate_spec"])),
            "hyperparameter": np.asarray(str(samples["hyperparameter"])),
            "seed": np.asarray(int(samples["seed"])),
            "lam": np.asarray(float(samples["lam"])),
            "conditions": np.asarray(samples["conditions"], dtype=np.float32),
            "surrogate": np.asarray(samples["surrogate"], dtype=np.float32),
            "reference": np.asarray(samples["reference"], dtype=np.float32),
        }
        for key in ("surrogate", "reference"):
            if arrays[key].ndim != 3:
                raise ValueError(f"samples[{key!r}] must be [m, n, D], got shape {arrays[key].shape}")
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        path = self.samples_path(arrays["task"].item(), arrays["surrogate_spec"].item(), arrays["seed"].item())
        atomic_write_bytes(path, buf.getvalue())
        return path

    def load_samples(self, task: str | None = None) -> list[dict[str, Any]]:
        """Every stored sample cloud (of ``task`` only, if given) as a dict of :data:`SAMPLE_KEYS`
        (strings and numbers as Python values). Files that cannot be read as one (not an npz, truncated,
        a key missing) are skipped with a warning; any other error propagates."""
        files = sorted(self.samples.glob("*.npz")) if self.samples.is_dir() else []
        out = []
        for path in files:
            try:
                with np.load(path, allow_pickle=False) as data:
                    item = {k: data[k] for k in SAMPLE_KEYS}
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
                warnings.warn(f"sample file {path} skipped: {err}", stacklevel=2)
                continue
            for key in ("task", "surrogate_spec", "hyperparameter", "seed", "lam"):
                item[key] = item[key].item()
            if task is None or item["task"] == task:
                out.append(item)
        return out

    # ------------------------------------------------------------------ reading

    @staticmethod
    def _read(path: Path) -> pd.DataFrame:
        try:
            df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=_TEXT_COLUMNS)
        except Exception as err:
            raise ResultsError(f"Results file {path} cannot be read as CSV: {err}") from None
        df = upgrade(df)
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise ResultsError(f"Results file {path} lacks columns {missing}; it is not an hti-bench results file.")
        versions = set(df["schema_version"].dropna().astype(int))
        if versions - {SCHEMA_VERSION}:
            raise ResultsError(
                f"Results file {path} has schema version {sorted(versions)}, this hti-bench reads "
                f"{SCHEMA_VERSION}. Re-run the unit or use the hti-bench version that wrote it."
            )
        df["error"] = df["error"].fillna("").astype(str)
        df["metric_note"] = df["metric_note"].fillna("").astype(str)
        return df

    def load(self) -> pd.DataFrame:
        """Every stored row, merged: duplicates of the natural key keep the newest ``run_date``."""
        files = sorted(self.runs.glob("*.csv")) if self.runs.is_dir() else []
        if not files:
            return pd.DataFrame(columns=list(COLUMNS))
        return merge([self._read(p) for p in files])

    def task_leaderboard_path(self, task: str) -> Path:
        return self.root / f"leaderboard_{safe_name(task)}.csv"

    def write_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Regenerate ``results.csv``, ``leaderboard.csv``, ``significance.csv`` (every pair of surrogates
        per task and track, :mod:`hti_bench.harness.significance`) and one ``leaderboard_<task>.csv`` per task
        (named by :func:`safe_name`); per-task files of tasks no longer stored are removed. Returns
        (results, leaderboard)."""
        from hti_bench.harness.significance import pairwise

        df = self.load()
        board = leaderboard(df)
        atomic_write_bytes(self.root / "results.csv", df.to_csv(index=False).encode())
        atomic_write_bytes(self.root / "leaderboard.csv", board.to_csv(index=False).encode())
        atomic_write_bytes(self.root / "significance.csv", pairwise(df).to_csv(index=False).encode())
        written = set()
        for task, group in board.groupby("task", sort=True):
            path = self.task_leaderboard_path(str(task))
            atomic_write_bytes(path, group.to_csv(index=False).encode())
            written.add(path.name)
        for path in self.root.glob("leaderboard_*.csv"):
            if path.name not in written and _is_leaderboard_file(path):
                path.unlink(missing_ok=True)
        return df, board


def _is_leaderboard_file(path: Path) -> bool:
    """Whether ``path`` is a per-task leaderboard this module wrote (its header is ours), so a user's
    own ``leaderboard_notes.csv`` is never deleted."""
    try:
        with path.open(encoding="utf-8") as fh:
            header = fh.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return (
        header.startswith(("task,rank,surrogate,", "task,track,rank,surrogate,", "task,track,mode,rank,surrogate,"))
        and "n_tasks_ranked" in header
    )


def upgrade(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of an older schema made current, in place: the columns their version lacks are added
    (NaN; see :data:`_UPGRADES`) and their ``schema_version`` becomes :data:`SCHEMA_VERSION`. Rows of
    other versions are left alone (reading refuses a newer one). Returns ``df``."""
    if "schema_version" in df.columns:
        for version in sorted(set(df["schema_version"].dropna().astype(int))):
            for col in _UPGRADES.get(version, ()):
                if col not in df.columns:
                    df[col] = np.nan
        old = df["schema_version"].isin(list(_UPGRADES))
        if "mode" in df.columns:
            df.loc[old & df["mode"].isna(), "mode"] = "transductive"
        if "d" in df.columns:
            d = pd.to_numeric(df["d"], errors="coerce")
            df["d"] = d.where(~(old & d.isna()), 1)
        if "lambda_point" in df.columns and "lambda_heldout" in df.columns:
            fill = old & df["lambda_point"].isna()
            df["lambda_point"] = df["lambda_point"].astype(object)  # an added column is float NaN
            df.loc[fill, "lambda_point"] = [repr(float(v)) for v in pd.to_numeric(df.loc[fill, "lambda_heldout"])]
        if "track" in df.columns:
            df.loc[old & df["track"].isna(), "track"] = "default"
        if "sealed" in df.columns:
            df["sealed"] = df["sealed"].astype(object)
            df.loc[old & df["sealed"].isna(), "sealed"] = False
        if "config" in df.columns and "surrogate" in df.columns:
            df.loc[old & df["config"].isna(), "config"] = df.loc[old & df["config"].isna(), "surrogate"]
        df.loc[old, "schema_version"] = SCHEMA_VERSION
    return df


def merge(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate result tables and keep, for every natural key, the newest row. Idempotent."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    df = pd.concat(frames, ignore_index=True)
    for col in _FLOAT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["seed"] = df["seed"].astype(int)
    df["track"] = df["track"].fillna("default").replace("", "default")
    df = df.sort_values("run_date", kind="stable").drop_duplicates(list(KEY), keep="last")
    extra = sorted(c for c in df.columns if c not in COLUMNS)
    return df[list(COLUMNS) + extra].sort_values(list(KEY), kind="stable").reset_index(drop=True)


def schema_markdown() -> str:
    """The column table of ``results/README.md``, generated from :data:`COLUMNS` (a test keeps them equal)."""
    lines = [
        f"Schema version {SCHEMA_VERSION}. Natural key: {', '.join(KEY)}.",
        "",
        "| column | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in COLUMNS.items()]
    lines += [
        "| `metric_<name>` | A task metric of the surrogate's samples (e.g. `metric_nll` on semicircles). |",
        "| `ref_metric_<name>` | The same metric of the held-out network's own samples, for reading the former "
        "(closed-loop tasks: of the held-out policy driving the same episodes, the ceiling). |",
        "| `nearest_metric_<name>` | Closed-loop tasks: the metric of the nearest anchor's policy driving the same "
        "episodes (the trivial answer). |",
        "| `wandb_run_id` | The wandb run that logged the unit, when tracking was on. |",
    ]
    return "\n".join(lines)
