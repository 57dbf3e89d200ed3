"""The surrogate contract as importable checks, and tiny tasks to run them on.

``check_surrogate(MySurrogate)`` runs every check and returns the failures; the pytest contract test
(``tests/contract/test_surrogates.py``) parametrises the same checks over every registered surrogate,
and ``hti-bench check NAME`` runs them from the shell, sealed (:func:`check_sealed`). Each check fits on a tiny task, so the whole
contract takes seconds per surrogate when its ``test_config`` keeps the budget small. A surrogate is
handed what the harness hands it (:class:`~hti_bench.view.TaskView`, never the task), and one check
scores it through the harness's own unit evaluation (:func:`hti_bench.harness.unit.evaluate`).
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from hti_bench.anchors import AnchorSet
from hti_bench.clock import Point
from hti_bench.errors import OpenConditionError
from hti_bench.specs import format_spec
from hti_bench.surrogate import Surrogate
from hti_bench.task import Task
from hti_bench.tasks.gaussian_path import GaussianPath
from hti_bench.view import TaskView, seal


@dataclass(frozen=True)
class Subject:
    """What the checks that go through the harness (:data:`SCORING`) need of a surrogate: what it
    declares, and what to hand :func:`~hti_bench.harness.unit.evaluate`: a fresh instance (the in-process
    checks) or its name with ``test_config`` (``hti-bench check``: the harness then runs it sealed)."""

    name: str
    requires: frozenset[str]
    supports_multi: bool
    make: Callable[[], str | Surrogate]

    @classmethod
    def of_class(cls, surrogate: type[Surrogate]) -> Subject:
        return cls(
            surrogate.name,
            frozenset(surrogate.requires),
            bool(surrogate.supports_multi),
            lambda: surrogate(**surrogate.test_config),
        )

    @classmethod
    def of_entry(cls, entry: Any) -> Subject:
        """From a :class:`hti_bench.harness.sandbox.lookup.Entry` (a class described in a sandbox)."""
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.meta.get("test_config", {}).items()}
        spec = format_spec(entry.name, config)
        return cls(entry.name, entry.requires, bool(entry.meta.get("supports_multi")), lambda: spec)


def _subject(cls: type[Surrogate] | Subject) -> Subject:
    return cls if isinstance(cls, Subject) else Subject.of_class(cls)


def tiny_task(cls: type[Surrogate] | Subject, d: int | None = None) -> Task:
    """The smallest task a surrogate can run on: analytic, unless it needs a network. Trained tasks keep
    their networks in the target cache (``$HTI_BENCH_CACHE`` or ``~/.cache/hti-bench``). ``d`` is how
    many hyperparameters (1 or 2); by default 1, or 2 for a surrogate that only runs on several."""
    return (_tiny_line, _tiny_plane)[(_dims(cls) if d is None else d) - 1](cls)


def _tiny_line(cls: type[Surrogate] | Subject) -> Task:
    """One hyperparameter: the analytic Gaussian path, or a tiny moons-dropout for a surrogate that
    needs a network."""
    if "training_loss" in cls.requires or "architecture" in cls.requires:
        return tiny_moons_dropout(epochs=1, n_samples=24)
    return GaussianPath(n_samples=24)


def tiny_moons_dropout(epochs: int, n_samples: int, cache_dir: str | None = None) -> Task:
    """moons-dropout small enough to train a network in about a second (the target cache keeps them:
    ``$HTI_BENCH_CACHE`` or ``~/.cache/hti-bench``, unless ``cache_dir`` names another)."""
    from hti_bench.harness.targets import TargetCache
    from hti_bench.tasks.moons_dropout import MoonsDropout

    return MoonsDropout(
        cache=TargetCache(cache_dir),
        epochs=epochs,
        n_train=256,
        hidden=16,
        diffusion_steps=10,
        n_samples=n_samples,
        anchors=(0.0, 0.5, 0.9),
        heldout=(0.25, 0.7),
    )


def _tiny_plane(cls: type[Surrogate] | Subject) -> Task:
    """Two hyperparameters, anchors a 2×2 grid that leaves a margin of the box outside their hull
    (where a surrogate must refuse)."""
    if "training_loss" in cls.requires or "architecture" in cls.requires:
        from hti_bench.harness.targets import TargetCache
        from hti_bench.tasks.noisy_regression import NoisyRegression2D

        return NoisyRegression2D(
            cache=TargetCache(),
            epochs=5,
            n_train=64,
            n_samples=4,
            design="grid:2x2",
            design_box=((0.1, 10.0), (0.1, 10.0)),
            heldout=((1.0, 1.0), (0.3, 3.0)),
        )
    from hti_bench.tasks.gaussian_plane import GaussianPlane

    return GaussianPlane(
        n_samples=24, design="grid:2x2", design_box=((0.1, 0.9), (0.1, 0.9)), heldout=((0.5, 0.5), (0.3, 0.6))
    )


def _dims(cls: type[Surrogate] | Subject) -> int:
    """1, or 2 for a surrogate that runs on several hyperparameters and skips the 1-D tiny task."""
    from hti_bench.harness.sandbox.lookup import open_surrogate

    subject = _subject(cls)
    if not subject.supports_multi:
        return 1
    task = tiny_task(subject, d=1)
    surrogate = open_surrogate(subject.make(), task)
    try:
        return 2 if surrogate.skip(TaskView(task, requires=surrogate.requires)) else 1
    finally:
        surrogate.close()


def _outside(task: Task) -> Point:
    """A λ outside the anchors' range (their hull): the first anchor moved 0.1 of clock time down its
    first axis, kept inside the task's range; where that is still among the anchors (the first anchor
    sits at the range's end), moved a tenth of the anchors' spread on that axis down instead."""
    space, anchors = task.hyperparameters, task.anchors
    first, last, axis = anchors[0], anchors[-1], space.axes[0]
    candidates = (
        (axis.from_time(axis.to_time(first[0]) - 0.1), *first[1:]),
        (first[0] - 0.1 * (last[0] - first[0]), *first[1:]),
    )
    for point in candidates:
        try:
            space.simplex(anchors, point)
        except ValueError:
            return point
    raise AssertionError(f"no λ outside the anchors {anchors} of task '{task.name}' was found")


class OpenGaussian(GaussianPath):
    """A tiny analytic task with continuous conditions, for the open-condition check: y | x, λ ~
    N((1 + λ)·x, (0.2 + 0.3 λ)² I₂), x ∈ ℝ². Any row x is answerable, like a policy's states.
    ``gaussian-path``'s λ, anchors and held-out λ; only the conditions and the law differ."""

    name = "open-gaussian"
    description = "Contract-test task: continuous 2-D conditions, Gaussian outputs affine in λ."
    categorical = False

    def __init__(self, **overrides: object) -> None:
        super().__init__(**{"n_samples": 24, **overrides})

    @property
    def condition_dim(self) -> int:
        return 2

    def eval_conditions(self) -> torch.Tensor:
        return torch.linspace(-1.0, 1.0, 8).reshape(4, 2)

    def sample(self, lam: Point, conditions: torch.Tensor, n: int, seed: int) -> torch.Tensor:
        (lam,) = self.hyperparameters.check(lam)
        x = torch.as_tensor(conditions, dtype=torch.float32)
        noise = torch.randn(x.shape[0], n, 2, generator=torch.Generator().manual_seed(int(seed)))
        return (1.0 + lam) * x[:, None, :] + (0.2 + 0.3 * lam) * noise


def open_task(cls: type[Surrogate]) -> Task:
    """A tiny task whose conditions are continuous, so a surrogate can be asked at rows it never saw:
    ``reward-weighting``'s policy states for surrogates that need a network, else :class:`OpenGaussian`."""
    if "training_loss" in cls.requires or "architecture" in cls.requires:
        from hti_bench.harness.targets import TargetCache
        from hti_bench.tasks.reward_weighting import RewardWeighting

        return RewardWeighting(cache=TargetCache(), epochs=1, n_train=256, hidden=16, horizon=5, n_samples=24, n_eval=4)
    return OpenGaussian()


def _setup(cls: type[Surrogate]) -> tuple[Surrogate, Task, AnchorSet]:
    from hti_bench.harness.unit import build_anchor_set

    task = tiny_task(cls)
    return cls(**cls.test_config), task, build_anchor_set(task, seed=0)


def _fit(surrogate: Surrogate, task: Task, anchors: AnchorSet, seed: int = 0) -> Surrogate:
    """Fit as the harness does: through a view that is sealed once ``fit`` returns, the anchor set
    carrying the view's anchor oracle."""
    view = TaskView(task, requires=surrogate.requires)
    anchors = dataclasses.replace(anchors, oracle=view.anchor_samples)
    try:
        return surrogate.fit(anchors, view, seed=seed)
    finally:
        seal(view)


class _Marker:
    """A value no constructor would make up: proof that an argument was stored as given."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<marker for {self.name}>"


def check_init_stores_params(cls: type[Surrogate]) -> None:
    """``__init__`` stores each argument unchanged under its own name, and learns nothing."""
    surrogate = cls(**cls.test_config)
    expected = {**cls.default_params(), **cls.test_config}
    got = surrogate.get_params()
    assert got == expected, f"get_params() returned {got}, expected {expected}: store every argument unchanged"
    learned = [k for k in vars(surrogate) if k.endswith("_") and not k.startswith("_")]
    assert not learned, f"attributes {learned} exist before fit(); learned state belongs in fit()"
    # A value equal to the default would hide a forgotten `self.x = x` (get_params falls back to the
    # default): pass a marker for every argument and find that very object on the instance.
    markers = {name: _Marker(name) for name in cls.default_params()}
    marked = cls(**markers)
    missing = [name for name, marker in markers.items() if vars(marked).get(name) is not marker]
    assert not missing, f"__init__ does not store {missing} unchanged under the same name(s)"


def check_params_accept_defaults(cls: type[Surrogate]) -> None:
    """The defaults and ``test_config`` pass the harness's parameter validation."""
    cls().validate_params()
    cls(**cls.test_config).validate_params()


def check_fit_returns_self(cls: type[Surrogate]) -> None:
    surrogate, task, anchors = _setup(cls)
    assert _fit(surrogate, task, anchors) is surrogate, "fit() must return self"


def check_sample_shape(cls: type[Surrogate]) -> None:
    """(M, n, D) floats, finite, for an n different from the anchors' and a subset of conditions."""
    surrogate, task, anchors = _setup(cls)
    _fit(surrogate, task, anchors)
    conds = task.eval_conditions()[:2]
    for n in (7, anchors.n_samples):
        out = surrogate.sample(task.heldout[0], conds, n, seed=1)
        assert isinstance(out, torch.Tensor), f"sample() returned {type(out).__name__}, expected a torch.Tensor"
        assert tuple(out.shape) == (2, n, anchors.output_dim), (
            f"sample() shape {tuple(out.shape)}, expected {(2, n, anchors.output_dim)}"
        )
        assert out.dtype.is_floating_point, f"sample() dtype {out.dtype} is not floating point"
        assert torch.isfinite(out).all(), "sample() returned NaN or inf"


def check_same_seed_same_samples(cls: type[Surrogate]) -> None:
    surrogate, task, anchors = _setup(cls)
    _fit(surrogate, task, anchors)
    conds = task.eval_conditions()
    lam = task.heldout[-1]
    a = surrogate.sample(lam, conds, 16, seed=3)
    b = surrogate.sample(lam, conds, 16, seed=3)
    assert torch.equal(a, b), "sample() with the same seed gave different samples"


def check_refit_replaces(cls: type[Surrogate]) -> None:
    """Fitting twice with the same seed equals fitting once."""
    once, task, anchors = _setup(cls)
    _fit(once, task, anchors, seed=5)
    twice = cls(**cls.test_config)
    _fit(twice, task, anchors, seed=5)
    _fit(twice, task, anchors, seed=5)
    lam, conds = task.heldout[0], task.eval_conditions()
    assert torch.allclose(once.sample(lam, conds, 16, seed=2), twice.sample(lam, conds, 16, seed=2), atol=1e-5), (
        "a second fit() with the same seed did not reproduce the first"
    )


def check_anchor_lambdas(cls: type[Surrogate]) -> None:
    """Every anchor λ and every held-out λ is answered."""
    surrogate, task, anchors = _setup(cls)
    _fit(surrogate, task, anchors)
    for lam in task.anchors + task.heldout:
        out = surrogate.sample(lam, task.eval_conditions(), 8, seed=0)
        assert torch.isfinite(out).all(), f"sample() at λ={lam} returned NaN or inf"


def check_outside_range(cls: type[Surrogate]) -> None:
    """λ outside the anchor range raises ValueError, unless the surrogate extrapolates."""
    surrogate, task, anchors = _setup(cls)
    _fit(surrogate, task, anchors)
    below = _outside(task)
    if cls.supports_extrapolation:
        out = surrogate.sample(below, task.eval_conditions(), 4, seed=0)
        assert torch.isfinite(out).all(), "extrapolation returned NaN or inf"
        return
    try:
        surrogate.sample(below, task.eval_conditions(), 4, seed=0)
    except ValueError:
        return
    raise AssertionError(f"sample() at λ={below} (outside the anchors {task.anchors}) did not raise ValueError")


def check_open_conditions(cls: type[Surrogate]) -> None:
    """At condition rows the anchor networks were never run on (as in a closed-loop rollout), it
    answers (M', n, D) finite samples, or raises :class:`~hti_bench.errors.OpenConditionError` to say
    it cannot; with the same seed, the same samples."""
    from hti_bench.harness.unit import build_anchor_set

    task = open_task(cls) if _dims(cls) == 1 else tiny_task(cls)
    surrogate = cls(**cls.test_config)
    _fit(surrogate, task, build_anchor_set(task, seed=0))
    new = task.eval_conditions()[:3] + 0.123  # rows no anchor network was run on
    try:
        out = surrogate.sample(task.heldout[0], new, 5, seed=4)
    except OpenConditionError:
        return
    assert tuple(out.shape) == (3, 5, task.output_dim), f"sample() at new conditions: shape {tuple(out.shape)}"
    assert torch.isfinite(out).all(), "sample() at new conditions returned NaN or inf"
    again = surrogate.sample(task.heldout[0], new, 5, seed=4)
    assert torch.allclose(out, again), "sample() at new conditions with the same seed gave different samples"


def check_scored_by_the_harness(cls: type[Surrogate] | Subject) -> None:
    """The harness's own unit evaluation fits and scores it, through the view: every row ok."""
    from hti_bench.harness.unit import evaluate

    subject = _subject(cls)
    result = evaluate(tiny_task(subject), subject.make(), seed=0, clouds=False)
    assert result.status == "ok", f"the harness scored it {result.status}: {result.error}"
    assert all(r["w2"] >= 0 for r in result.rows), "the harness scored it without a W₂"


def check_multi_lambda(cls: type[Surrogate] | Subject) -> None:
    """On a task of two hyperparameters: with ``supports_multi`` the harness scores it (every row ok);
    without, the harness skips it with the reason."""
    from hti_bench.harness.unit import evaluate

    subject = _subject(cls)
    task = tiny_task(subject, d=2)
    result = evaluate(task, subject.make(), seed=0, clouds=False)
    if not subject.supports_multi:
        assert result.status == "skipped" and "one-dimensional" in result.error, (
            f"without supports_multi the harness should skip it on {task.name}, got {result.status}: {result.error}"
        )
        return
    assert result.status == "ok", f"the harness scored it {result.status} on {task.name}: {result.error}"


def check_refuses_outside_the_hull(cls: type[Surrogate]) -> None:
    """On a task of two hyperparameters, a surrogate with ``supports_multi`` answers at a held-out point
    and refuses one outside the anchors' hull (unless it extrapolates)."""
    from hti_bench.harness.unit import build_anchor_set

    if not cls.supports_multi:
        return
    task = tiny_task(cls, d=2)
    surrogate = cls(**cls.test_config)
    _fit(surrogate, task, build_anchor_set(task, seed=0))
    out = surrogate.sample(task.heldout[0], task.eval_conditions(), 5, seed=0)
    assert tuple(out.shape) == (task.eval_conditions().shape[0], 5, task.output_dim) and torch.isfinite(out).all()
    if not cls.supports_extrapolation:
        try:
            surrogate.sample(_outside(task), task.eval_conditions(), 4, seed=0)
        except ValueError:
            return
        raise AssertionError(f"sample() at {_outside(task)} (outside the anchors' hull) did not raise ValueError")


CHECKS: dict[str, Callable[[type[Surrogate]], None]] = {
    f.__name__: f
    for f in (
        check_init_stores_params,
        check_params_accept_defaults,
        check_fit_returns_self,
        check_sample_shape,
        check_same_seed_same_samples,
        check_refit_replaces,
        check_anchor_lambdas,
        check_outside_range,
        check_open_conditions,
        check_scored_by_the_harness,
        check_multi_lambda,
        check_refuses_outside_the_hull,
    )
}

#: The checks that score through the harness (:func:`~hti_bench.harness.unit.evaluate`): ``hti-bench
#: check`` runs them here, sealed, and every other check inside one sandbox (they need the class).
SCORING = ("check_scored_by_the_harness", "check_multi_lambda")


def run_check(name: str, cls: type[Surrogate]) -> str | None:
    """Run one contract check; returns its failure message (with the traceback), or None if it passed."""
    try:
        CHECKS[name](cls)
    except Exception as err:
        return "".join(traceback.format_exception(type(err), err, err.__traceback__)).strip()
    return None


def check_surrogate(cls: type[Surrogate], verbose: bool = False) -> list[tuple[str, str]]:
    """Run every contract check on ``cls`` in this process; returns ``[(check name, failure message), ...]``."""
    return run_all(CHECKS, lambda name: run_check(name, cls), cls.name, verbose)


def checks_of(source: str, names: list[str]) -> dict[str, str | None]:
    """The checks ``names`` on the one class ``source`` defines: what :func:`check_sealed` runs in a sandbox."""
    from hti_bench.harness.registry import load_source

    cls = load_source(source)
    return {name: run_check(name, cls) for name in names}


def check_sealed(name: str, verbose: bool = False) -> list[tuple[str, str]]:
    """``hti-bench check NAME``: every contract check on the discovered surrogate ``name``, its code never
    imported here. The checks that need the class run in one sandbox (confined, with a target cache of
    its own); the :data:`SCORING` checks run here, through the sealed harness, by its name."""
    from hti_bench.harness.sandbox import lookup
    from hti_bench.harness.sandbox.outside import Sandbox

    entry = lookup.entry(name)
    with Sandbox() as box:
        header, _ = box.call("call", f"{__name__}:checks_of", entry.source, [n for n in CHECKS if n not in SCORING])
    verdicts = {str(k): (str(v) if v is not None else None) for k, v in dict(header["value"]).items()}
    subject = Subject.of_entry(entry)

    def run_one(check: str) -> str | None:
        if check not in SCORING:
            return verdicts.get(check, "the sandbox did not run this check")
        try:
            CHECKS[check](subject)
        except Exception as err:
            return "".join(traceback.format_exception(type(err), err, err.__traceback__)).strip()
        return None

    return run_all(CHECKS, run_one, name, verbose)


def run_all(
    names: Iterable[str], run_one: Callable[[str], str | None], label: str, verbose: bool
) -> list[tuple[str, str]]:
    """Run every check of ``names`` (``run_one`` gives a failure message or None) and report each failing
    one, not just the first, by the last line of its message; ``verbose`` prints a line per check."""
    failures = []
    for name in names:
        msg = run_one(name)
        if msg is not None:
            msg = msg.splitlines()[-1]
            failures.append((name, msg))
        if verbose:
            print(f"FAIL {label} {name}: {msg}" if msg else f"ok   {label} {name}")  # noqa: T201
    return failures
