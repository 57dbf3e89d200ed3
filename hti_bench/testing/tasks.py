"""The task contract as importable checks: ``check_task("moons-dropout[epochs=2]")``, ``hti-bench check
--task SPEC`` and ``tests/contract/test_tasks.py`` (docs/guides/add-a-task.md lists the checks).
"""

from __future__ import annotations

import dataclasses
import math
import traceback
from collections.abc import Callable

import torch

from hti_bench.task import Task
from hti_bench.testing.surrogates import run_all
from hti_bench.view import TaskView

# ---------------------------------------------------------------------------------------- the task contract
#
# ``check_task("moons-dropout[epochs=2]")`` builds the task from its spec (as ``hti-bench run -t`` does) and
# runs every check below; tests/contract/test_tasks.py runs them over every built-in task on tiny budgets. A
# task's λ is read through ``task.hyperparameters`` (its axes and ``check``) and handed back in the form the
# task gave it, so the checks hold whether a 1-D task gives λ as a float or as a point of one value.

#: The capabilities a task may declare, and what each promises (see :class:`hti_bench.task.Task`).
KNOWN_CAPABILITIES = ("architecture", "training_loss")

#: Options whose change the cache-key check does not try: they move the λ lists themselves.
_LAMBDA_OPTIONS = frozenset({"anchors", "heldout", "validation", "design", "design_box", "lambdas"})


@dataclasses.dataclass(frozen=True)
class TaskUnderCheck:
    """What the task checks build and check.

    ``spec`` is a task spec, ``name`` or ``name[option=value,...]``, resolved like ``hti-bench run -t``
    resolves it (the built-in tasks and the ``hti_bench.tasks`` entry points), or by ``task_class``, for a
    class that is not registered (the spec's name must then be that class's ``name``). A task that trains
    networks keeps them in the target cache in ``cache_dir`` (default: ``$HTI_BENCH_CACHE`` or
    ``~/.cache/hti-bench``). ``fresh_process``: the cache-key check also computes the key in a new Python
    process (a few seconds; the contract tests do that once for every task together).
    """

    spec: str
    task_class: type[Task] | None = None
    cache_dir: str | None = None
    fresh_process: bool = True

    @property
    def name(self) -> str:
        from hti_bench.specs import parse_spec

        return parse_spec(self.spec)[0]

    def task_type(self) -> type[Task]:
        """The class the spec names."""
        from hti_bench.errors import ConfigError
        from hti_bench.harness.registry import make_task, task_classes
        from hti_bench.specs import parse_spec

        name, _ = parse_spec(self.spec)
        if self.task_class is not None:
            if name != self.task_class.name:
                raise ConfigError(
                    f"spec {self.spec!r} names '{name}', but the task class given is '{self.task_class.name}'"
                )
            return self.task_class
        classes = task_classes()
        if name not in classes:
            make_task(self.spec)  # raises the registry's own "Unknown task … Did you mean …" error
        return classes[name]

    def make(self, *, cache: object = None, spec: str | None = None, **changes: object) -> Task:
        """The task of ``spec`` (default: this one's), with option ``changes``; its networks come from
        ``cache`` (a :class:`~hti_bench.task.NetworkStore`; default a target cache in :attr:`cache_dir`)."""
        from hti_bench.harness.targets import TargetCache
        from hti_bench.specs import parse_spec

        _, params = parse_spec(spec or self.spec)
        params.update(changes)
        store = cache if cache is not None else TargetCache(self.cache_dir)
        return self.task_type()(cache=store, **params)


def _subject(task: str | type[Task] | TaskUnderCheck, cache_dir: str | None = None) -> TaskUnderCheck:
    if isinstance(task, TaskUnderCheck):
        return task
    if isinstance(task, type):
        return TaskUnderCheck(task.name, task_class=task, cache_dir=cache_dir)
    return TaskUnderCheck(str(task), cache_dir=cache_dir)


def _call(what: str, fn: Callable[..., object], *args: object, **kwargs: object) -> object:
    """``fn(*args)``, an exception it raises turned into a failure that says which call raised it."""
    try:
        return fn(*args, **kwargs)
    except AssertionError:
        raise
    except Exception as err:
        raise AssertionError(f"{what} raised {type(err).__name__}: {err}") from err


def _shape_of(value: object) -> object:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _check_samples(out: object, expected: tuple[int, ...], what: str) -> torch.Tensor:
    assert isinstance(out, torch.Tensor), f"{what} returned {type(out).__name__}, expected a torch.Tensor"
    assert tuple(out.shape) == expected, (
        f"{what} returned shape {tuple(out.shape)}, expected (M, n, D) = {expected}: one row per condition, "
        "n draws each, output_dim columns"
    )
    assert out.dtype.is_floating_point, f"{what} returned dtype {out.dtype}; return floats (float32)"
    assert torch.isfinite(out).all(), f"{what} returned NaN or inf"
    return out


def check_task_refuses_bad_options(task: TaskUnderCheck) -> None:
    """An unknown option is refused with a :class:`~hti_bench.errors.ConfigError` that names it and lists
    the valid ones; a held-out λ outside the hyperparameter's range is refused with a ConfigError too."""
    from hti_bench.errors import ConfigError

    bad = "no_such_option"
    try:
        task.make(**{bad: 1})
    except ConfigError as err:
        message = str(err)
    except Exception as err:
        raise AssertionError(
            f"an unknown option {bad}=1 raised {type(err).__name__} ({err}), not ConfigError: pass **overrides on to "
            "Task.__init__, which refuses unknown options with the valid ones listed"
        ) from err
    else:
        raise AssertionError(
            f"the unknown option {bad}=1 was accepted: pass **overrides on to Task.__init__ unchanged (it refuses "
            "unknown options), and declare every option as a field of the task's Config"
        )
    valid = [f.name for f in dataclasses.fields(task.task_type().Config)]
    assert bad in message, f"the error for the unknown option {bad!r} does not name it: {message!r}"
    unlisted = [name for name in valid if name not in message]
    assert not unlisted, (
        f"the error for the unknown option {bad!r} does not list the valid options {unlisted}: {message!r}"
    )

    probe = task.make(cache=KeyProbe())
    space = probe.hyperparameters
    axis = space.axes[0]
    outside = axis.high + (axis.high - axis.low)
    # In the form the task gives its own held-out λ: a float, or a point of d values.
    point = (outside, *(a.low for a in space.axes[1:])) if isinstance(probe.heldout[0], tuple) else outside
    try:
        task.make(heldout=(point,))
    except ConfigError:
        return
    except Exception as err:
        raise AssertionError(
            f"a held-out λ outside the range ({space.names[0]}={outside}, range [{axis.low}, {axis.high}]) raised "
            f"{type(err).__name__} ({err}), not ConfigError: keep Task's own validation of the λ lists "
            "(call super()._validate_lambdas() if you override it)"
        ) from err
    raise AssertionError(
        f"a held-out λ outside the range ({space.names[0]}={outside}, range [{axis.low}, {axis.high}]) was accepted: "
        "keep Task's own validation of the λ lists (call super()._validate_lambdas() if you override it)"
    )


def check_task_lambdas(task: TaskUnderCheck) -> None:
    """Anchors, held-out and validation λ lie inside the hyperparameters' ranges and are disjoint: at least
    d + 1 distinct anchors, at least one held-out λ, each held-out and validation λ inside the anchors' range
    (their convex hull for several hyperparameters), none of them an anchor, no validation λ a held-out one."""
    t = task.make(cache=KeyProbe())
    space = t.hyperparameters
    where = f"{space.name} ∈ " + " × ".join(f"[{a.low}, {a.high}]" for a in space.axes)
    lists = {"anchor": tuple(t.anchors), "held-out": tuple(t.heldout), "validation": tuple(t.validation)}
    points: dict[str, list[tuple[float, ...]]] = {}
    for what, values in lists.items():
        points[what] = []
        for lam in values:
            try:
                points[what].append(space.check(lam))
            except ValueError as err:
                raise AssertionError(
                    f"the {what} λ {lam!r} is not a point of the task's hyperparameters ({where}): {err} "
                    "Choose λ inside the declared range, or widen the range"
                ) from None
    anchors, heldout, validation = points["anchor"], points["held-out"], points["validation"]
    assert len(anchors) >= space.d + 1, (
        f"{len(anchors)} anchor(s) {lists['anchor']}: {space.d} hyperparameter(s) need at least {space.d + 1} anchors"
    )
    assert heldout, "no held-out λ: declare at least one (the λ surrogates are scored at)"

    def same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b))

    for what, values in points.items():
        for i, p in enumerate(values):
            assert not any(same(p, q) for q in values[:i]), f"the {what} λ {lists[what][i]!r} is listed twice"
    for what, values, others in (
        ("held-out", heldout, anchors),
        ("validation", validation, anchors + heldout),
    ):
        for raw, p in zip(lists[what], values):
            clash = [q for q in others if same(p, q)]
            assert not clash, (
                f"the {what} λ {raw!r} is also "
                + ("an anchor" if what == "held-out" else "an anchor or a held-out λ")
                + ": the λ lists must be disjoint (surrogates see the anchors; the leaderboard scores the held-out λ)"
            )
            try:
                space.simplex(t.anchors, raw)
            except ValueError as err:
                raise AssertionError(
                    f"the {what} λ {raw!r} lies outside the anchors {lists['anchor']} ({err}): HTI interpolates, "
                    "so every held-out and validation λ must lie between the anchors"
                ) from None


def check_task_outputs(task: TaskUnderCheck) -> None:
    """``output_dim`` D and ``condition_dim`` C are positive integers; ``eval_conditions()`` and
    ``fit_conditions()`` are (M, C) tensors, the anchor data's rows distinct; ``sample(λ, rows, n, seed)``
    gives (rows, n, D) finite floats at an anchor and a held-out λ, for any n and any subset of rows, and so
    do ``floor_sample`` and ``seed_twin_sample`` (or None); ``metrics`` gives a dict of numbers."""
    t = task.make()
    d_out, d_cond = t.output_dim, t.condition_dim
    for what, value in (("output_dim", d_out), ("condition_dim", d_cond)):
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 1, (
            f"{what} is {value!r}: declare it as a positive int (a property or class attribute)"
        )
    conds = _call("eval_conditions()", t.eval_conditions)
    assert isinstance(conds, torch.Tensor) and conds.ndim == 2 and conds.shape[1] == d_cond and conds.shape[0] >= 1, (
        f"eval_conditions() returned {_shape_of(conds)}, expected a tensor (M, C) with M ≥ 1 and C = condition_dim = {d_cond}"
    )
    assert torch.isfinite(conds.float()).all(), "eval_conditions() holds NaN or inf"
    fit = _call("fit_conditions()", t.fit_conditions)
    assert isinstance(fit, torch.Tensor) and fit.ndim == 2 and fit.shape[1] == d_cond, (
        f"fit_conditions() returned {_shape_of(fit)}, expected a tensor (M', C) with C = {d_cond} (M' may be 0)"
    )
    if t.categorical:
        assert d_cond == 1, (
            f"categorical = True but condition_dim is {d_cond}: a categorical task has one class-id column"
        )
        assert torch.equal(conds.float(), conds.float().round()), (
            "categorical = True but eval_conditions() holds non-integer class ids"
        )
    rows, mask = _call("all_conditions()", t.all_conditions)
    distinct = torch.unique(rows.float(), dim=0).shape[0]
    assert distinct == rows.shape[0], (
        f"the anchor data's condition rows (eval_conditions() then fit_conditions()) hold {rows.shape[0] - distinct} "
        "duplicate row(s): the anchor data is keyed by condition row, so return each condition once"
    )
    n = t.n_samples
    for lam, kind in ((t.anchors[0], "anchor"), (t.heldout[0], "held-out")):
        at = f"at the {kind} λ {lam!r}"
        for some, k in ((rows if kind == "anchor" else conds.float(), n), (conds.float()[:2], 3)):
            out = _call(f"sample() {at}", t.sample, lam, some, k, 0)
            _check_samples(out, (some.shape[0], k, d_out), f"sample() {at} for {some.shape[0]} rows, n={k}")
    lam = t.heldout[0]
    floor = _call("floor_sample()", t.floor_sample, lam, conds.float(), n, 1)
    _check_samples(floor, (conds.shape[0], n, d_out), f"floor_sample() at λ {lam!r}")
    twin = _call("seed_twin_sample()", t.seed_twin_sample, lam, conds.float(), n, 2)
    if twin is not None:
        _check_samples(twin, (conds.shape[0], n, d_out), f"seed_twin_sample() at λ {lam!r}")
    out = t.sample(lam, conds.float(), n, 0)
    metrics = _call("metrics()", t.metrics, lam, conds.float(), out)
    assert isinstance(metrics, dict) and all(isinstance(k, str) for k in metrics), (
        f"metrics() returned {metrics!r}, expected a dict of name → float"
    )
    for key, value in metrics.items():
        try:
            float(value)
        except (TypeError, ValueError):
            raise AssertionError(f"metrics() gave {key}={value!r}, not a number") from None


def check_task_same_seed_same_targets(task: TaskUnderCheck) -> None:
    """The same spec and seed give the same targets: ``sample`` with one seed draws the same twice, and two
    builds of the task (the second training its networks again, in a fresh cache) give the same
    conditions and the same samples at an anchor."""
    import shutil
    import tempfile

    from hti_bench.harness.targets import TargetCache

    first = task.make()
    lam = first.anchors[0]
    conds = _call("eval_conditions()", first.eval_conditions).float()
    n = min(first.n_samples, 16)
    a = _call("sample()", first.sample, lam, conds, n, 7)
    b = first.sample(lam, conds, n, 7)
    assert torch.equal(a, b), (
        f"sample() at λ {lam!r} with seed 7 gave different draws on two calls: draw every random number from a "
        "generator seeded with `seed` (torch.Generator().manual_seed(seed), numpy.random.default_rng(seed))"
    )
    fresh = tempfile.mkdtemp(prefix="hti-bench-check-")
    try:
        second = task.make(cache=TargetCache(fresh))
        again = _call("eval_conditions() of a second build", second.eval_conditions).float()
        assert again.shape == conds.shape and torch.equal(again, conds), (
            "two builds of the same spec give different eval_conditions(): derive them from the options only "
            "(seeded generators, no global random state)"
        )
        c = _call("sample() of a second build", second.sample, lam, conds, n, 7)
        trained = " (its network trained again in a fresh cache, with the same model_seed)" if _trains(first) else ""
        if not torch.equal(a, c):
            gap = float((a - c).abs().max()) if a.shape == c.shape else float("nan")
            raise AssertionError(
                f"a second build of the same spec{trained} gives different samples at λ {lam!r} with the same seed "
                f"(largest difference {gap:.3g}): seed every random draw of the data and of training from the options "
                "(e.g. torch.Generator().manual_seed(self.config.data_seed)), not from global state or the clock"
            )
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def _trains(task: Task) -> bool:
    from hti_bench.task import TrainedTask

    return isinstance(task, TrainedTask)


def _per_example(lams: list[object]) -> torch.Tensor:
    """Per-example λ as the target training passes it: (B,) for scalars, (B, d) for points."""
    return torch.stack([torch.as_tensor(lam, dtype=torch.float32) for lam in lams])


def check_task_capabilities(task: TaskUnderCheck) -> None:
    """Each declared capability is offered through the :class:`~hti_bench.view.TaskView`, and each one not
    offered is explained in ``capability_notes``. ``"architecture"``: ``build_network`` and ``anchor_network``
    work, and the anchor network run through ``sample_network`` is the anchor target. ``"training_loss"``:
    during fit, ``training_data`` is tensors sharing their first dimension and ``per_example_loss`` gives
    one finite, differentiable loss per example at that example's own λ. ``closed_loop = True``:
    ``closed_loop_metrics`` scores a policy, the same for the same seed."""
    t = task.make()
    declared = frozenset(t.capabilities)
    unknown = sorted(declared - set(KNOWN_CAPABILITIES))
    assert not unknown, f"unknown capabilities {unknown}: the capabilities are {', '.join(KNOWN_CAPABILITIES)}"
    for cap in KNOWN_CAPABILITIES:
        if cap not in declared:
            assert str(t.capability_notes.get(cap, "")).strip(), (
                f"the task does not offer {cap!r} and does not say why: add capability_notes = {{{cap!r}: '<why>'}} "
                "(the leaderboard shows it beside the best-response surrogates it skips)"
            )
    if "architecture" in declared:
        _check_architecture(t)
    if "training_loss" in declared:
        _check_training_loss(t)
    if t.closed_loop:
        _check_closed_loop(t)


def _check_architecture(t: Task) -> None:
    from torch import nn

    view = TaskView(t, requires={"architecture"})
    hint = "a task that declares 'architecture' subclasses TrainedTask and implements build_network and sample_network"
    net = _call(f"view.build_network() ({hint})", view.build_network)
    assert isinstance(net, nn.Module), f"build_network() returned {type(net).__name__}, expected an nn.Module"
    anchor = t.anchors[0]
    copy = _call(f"view.anchor_network({anchor!r})", view.anchor_network, anchor)
    assert isinstance(copy, nn.Module), f"view.anchor_network() returned {type(copy).__name__}, expected an nn.Module"
    conds = t.eval_conditions().float()[:4]
    with torch.no_grad():
        mine = _call(
            "view.sample_network(anchor network)", view.sample_network, copy, conds, 5, torch.Generator().manual_seed(3)
        )
    _check_samples(mine, (conds.shape[0], 5, t.output_dim), "sample_network() of the anchor network")
    target = t.sample(anchor, conds, 5, 3)
    assert torch.allclose(mine.float(), target, atol=1e-5), (
        f"the anchor network at {anchor!r} run through sample_network (generator seeded 3) differs from "
        f"sample() at that anchor with seed 3 (largest difference {float((mine - target).abs().max()):.3g}): "
        "sample() must be sample_network of the trained network, and the network's whole state must be in its "
        "state_dict (best-response surrogates rebuild networks from it)"
    )


def _check_training_loss(t: Task) -> None:
    view = TaskView(t, requires={"training_loss"})  # not sealed: as during fit()
    for what in ("epochs", "lr", "batch_size"):
        value = _call(f"view.{what}", getattr, view, what)
        assert value > 0, f"view.{what} is {value!r}: the anchors' training budget must be positive"
    data = _call("view.training_data()", view.training_data)
    assert isinstance(data, tuple) and data and all(isinstance(x, torch.Tensor) for x in data), (
        f"training_data() gave {type(data).__name__}: return a tuple of tensors sharing their first dimension"
    )
    sizes = {int(x.shape[0]) for x in data}
    assert len(sizes) == 1 and min(sizes) >= 1, (
        f"training_data()'s tensors have first dimensions {sorted(sizes)}: they must share one (the examples)"
    )
    size = min(4, sizes.pop())
    batch = tuple(x[:size] for x in data)
    lo, hi = t.anchors[0], t.anchors[-1]
    mixed_lams = [lo if i % 2 == 0 else hi for i in range(size)]
    builder = getattr(t, "build_network", None)
    assert callable(builder), "a task that declares 'training_loss' needs build_network() (subclass TrainedTask)"
    net = _call("build_network()", builder)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        mixed = _call("view.per_example_loss()", view.per_example_loss, net, batch, _per_example(mixed_lams))
        assert isinstance(mixed, torch.Tensor) and tuple(mixed.shape) == (size,), (
            f"per_example_loss() on a batch of {size} returned {_shape_of(mixed)}, expected ({size},): one loss per "
            "example, not their mean"
        )
        assert torch.isfinite(mixed).all(), "per_example_loss() returned NaN or inf"
        assert mixed.requires_grad, (
            "per_example_loss() is detached from the network's weights: best-response surrogates differentiate it "
            "(call the network through its forward, do not detach)"
        )
        mixed.mean().backward()
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and any(bool(g.abs().sum() > 0) for g in grads), (
            "per_example_loss() does not depend on the network's weights through autograd: best-response surrogates "
            "differentiate it (call the network through its forward)"
        )
        torch.manual_seed(0)
        with torch.no_grad():
            plain = view.per_example_loss(net, batch, _per_example([lo] * size))
    ones = [i for i, lam in enumerate(mixed_lams) if lam is lo]
    others = [i for i, lam in enumerate(mixed_lams) if lam is not lo]
    assert torch.allclose(mixed.detach()[ones], plain[ones], rtol=1e-4, atol=1e-5), (
        "per_example_loss() of an example changed when other examples of its batch had another λ: each example's "
        "loss must use its own λ (lam[i]), and draw its randomness the same way whatever λ is"
    )
    if others:
        assert not torch.allclose(mixed.detach()[others], plain[others]), (
            f"per_example_loss() gives the same losses at λ {lo!r} and {hi!r}: it must use the λ it is given"
        )


def _check_closed_loop(t: Task) -> None:
    anchor = t.anchors[0]
    shapes: list[tuple[int, ...]] = []

    def act(states: torch.Tensor, n: int, seed: int) -> torch.Tensor:
        shapes.append(tuple(states.shape))
        return t.sample(anchor, states, n, seed)

    try:
        first = t.closed_loop_metrics(anchor, act, 0)
    except NotImplementedError as err:
        raise AssertionError(
            f"closed_loop = True but closed_loop_metrics() is not implemented ({err}): implement it, or subclass "
            "hti_bench.tasks.control.base.PolicyTask"
        ) from None
    except Exception as err:
        raise AssertionError(
            f"closed_loop_metrics() with the anchor policy raised {type(err).__name__}: {err}"
        ) from err
    assert shapes, "closed_loop_metrics() never asked the policy for an action"
    bad = [s for s in shapes if len(s) != 2 or s[1] != t.condition_dim]
    assert not bad, f"closed_loop_metrics() passed states of shape {bad[0]}, expected (B, C = {t.condition_dim})"
    assert isinstance(first, dict) and first, (
        f"closed_loop_metrics() returned {first!r}, expected a dict of name → float"
    )
    assert all(isinstance(v, float) and math.isfinite(v) for v in first.values()), (
        f"closed_loop_metrics() returned {first!r}: every value must be a finite float"
    )
    second = t.closed_loop_metrics(anchor, act, 0)
    assert second == first, (
        f"closed_loop_metrics() with the same policy and seed gave {first} then {second}: derive the episodes' "
        "seeds from the run seed, so every policy is scored on the same episodes"
    )


class _Keyed(Exception):
    """Carries a target's cache key out of :class:`KeyProbe` (nothing is trained)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class KeyProbe:
    """A :class:`~hti_bench.task.NetworkStore` that trains nothing: asked for a network, it raises the key
    the target cache would store it under, so the key is exactly the one a run uses."""

    def get_or_train(self, task: Task, lam: object, seed: int) -> object:
        from hti_bench.harness.targets import cache_key

        raise _Keyed(cache_key(task.cache_signature(), lam, seed))

    def train_seconds(self, task: Task, lam: object, seed: int) -> float:
        return float("nan")


def target_key(task: Task, lam: object = None, seed: int | None = None) -> str | None:
    """The target cache's key of ``task``'s network at λ (default: its first anchor) and training seed
    (default: its ``model_seed``), computed without training; None for a task that trains no network. The
    task must have been built with ``cache=`` a :class:`KeyProbe` (:meth:`TaskUnderCheck.make` does it
    for the checks)."""
    if not _trains(task):
        return None
    try:
        task.network(task.anchors[0] if lam is None else lam, seed=seed)
    except _Keyed as keyed:
        return keyed.key
    raise AssertionError("the task returned a network without asking its store: build it with cache=KeyProbe()")


def target_keys_in_new_process(specs: list[str]) -> list[str | None]:
    """:func:`target_key` of each registered task spec, computed in a new Python process (with another
    hash seed): a key that depends on the process (an object's address, a set's order) differs here."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import json, sys\n"
        "from hti_bench.harness.registry import make_task\n"
        "from hti_bench.testing.tasks import KeyProbe, target_key\n"
        "print(json.dumps([target_key(make_task(s, cache=KeyProbe())) for s in json.loads(sys.argv[1])]))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="random")
    root = str(Path(__file__).resolve().parents[1])  # this hti_bench, not another installed one
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(list(specs))], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise AssertionError(
            f"a new Python process could not build {', '.join(specs)} ({last}): a task must be found by its name "
            "in any process (worker processes build it from its spec): register it as a built-in task or under "
            "the hti_bench.tasks entry points"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _perturbed(value: object) -> list[object]:
    """Other values of an option to try, nearest first (none for text and λ-like options)."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1]
    if isinstance(value, float):
        return [value * 0.5, value * 1.5] if value else [0.5, 1.0]
    if isinstance(value, tuple) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [(value[0] + 1, *value[1:])]
    return []


def check_task_cache_key(task: TaskUnderCheck) -> None:
    """The task's spec is canonical (building from ``task.spec`` gives the same task), and, for a task that
    trains networks, the target cache's key is stable: the same for two builds of one spec (and in a new
    process), different for another λ or seed, different when an option that changes the networks
    changes (``option(..., cache=True)``, the default) and the same when one that does not changes
    (``cache=False``)."""
    from hti_bench.errors import ConfigError

    first, second = task.make(cache=KeyProbe()), task.make(cache=KeyProbe())
    assert first.spec == second.spec, f"two builds of one spec are named {first.spec!r} and {second.spec!r}"
    rebuilt = task.make(cache=KeyProbe(), spec=first.spec)
    assert rebuilt.spec == first.spec and rebuilt.config == first.config, (
        f"the task's spec {first.spec!r} does not rebuild it (rebuilt: {rebuilt.spec!r}): results and worker "
        "processes find the task by its spec, so every option must round-trip through the spec"
    )
    key = target_key(first)
    if key is None:
        return  # nothing trained, nothing cached
    assert target_key(second) == key, (
        f"two builds of {first.spec!r} give the cache keys {key} and {target_key(second)}: cache_signature() must "
        "hold plain values (numbers, text, tuples), not objects whose repr names an address"
    )
    if len(first.anchors) > 1:
        assert target_key(first, first.anchors[-1]) != key, "the cache key is the same for two anchors: key λ too"
    seed = int(first.config.model_seed)
    assert target_key(first, seed=seed + 1) != key, "the cache key is the same for two training seeds: key the seed"
    if task.fresh_process and task.task_class is None:
        other = target_keys_in_new_process([first.spec])[0]
        assert other == key, (
            f"the cache key of {first.spec!r} is {key} in this process and {other} in a new one: cache_signature() "
            "must not depend on the process (sets of text, object addresses, hash order)"
        )
    for field in dataclasses.fields(first.config):
        if field.name in _LAMBDA_OPTIONS:
            continue
        value = getattr(first.config, field.name)
        for new in _perturbed(value):
            try:
                changed = task.make(cache=KeyProbe(), **{field.name: new})
            except ConfigError:
                continue  # not a valid value of this option: try the next
            other = target_key(changed)
            if field.metadata.get("cache", True):
                assert other != key, (
                    f"changing the option {field.name} from {value!r} to {new!r} keeps the cache key, so networks "
                    f"trained with {field.name}={value!r} would be reused: every option that changes the trained "
                    "networks must be in cache_signature() (option(..., cache=True), the default)"
                )
            else:
                assert other == key, (
                    f"changing the option {field.name} from {value!r} to {new!r} changes the cache key although it is "
                    "declared cache=False (it does not change the networks): drop it from cache_signature()"
                )
            break


def check_task_scored_by_the_harness(task: TaskUnderCheck) -> None:
    """The harness's own unit evaluation runs on it: the ``nearest-anchor`` baseline is fitted on its
    anchor data and scored at every held-out λ (closed loop included), every row ok."""
    from hti_bench.harness.registry import make_surrogate
    from hti_bench.harness.unit import evaluate

    result = evaluate(task.make(), make_surrogate("nearest-anchor"), seed=0, clouds=False)
    assert result.status == "ok", f"the harness scored nearest-anchor on it {result.status}: {result.error}"


TASK_CHECKS: dict[str, Callable[[TaskUnderCheck], None]] = {
    f.__name__: f
    for f in (
        check_task_refuses_bad_options,
        check_task_lambdas,
        check_task_cache_key,
        check_task_outputs,
        check_task_same_seed_same_targets,
        check_task_capabilities,
        check_task_scored_by_the_harness,
    )
}


def run_task_check(name: str, task: str | type[Task] | TaskUnderCheck) -> str | None:
    """Run one task contract check; returns its failure message (with the traceback), or None if it passed."""
    try:
        TASK_CHECKS[name](_subject(task))
    except Exception as err:
        return "".join(traceback.format_exception(type(err), err, err.__traceback__)).strip()
    return None


def check_task(
    task: str | type[Task] | TaskUnderCheck, verbose: bool = False, cache_dir: str | None = None
) -> list[tuple[str, str]]:
    """Run every task contract check on ``task`` (a spec such as ``"moons-dropout[epochs=2]"``, a task class,
    or a :class:`TaskUnderCheck`); returns ``[(check name, failure message), ...]``."""
    subject = _subject(task, cache_dir)
    return run_all(TASK_CHECKS, lambda name: run_task_check(name, subject), subject.spec, verbose)
