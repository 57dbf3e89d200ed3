"""Nothing a surrogate receives reaches a held-out λ: plugins that try to cheat fail, with the reason.

Each test does what a careless or dishonest plugin would: ask the task view for a held-out network or
its samples, reach the task or the target cache through the view's attributes, train at a queried λ
after fit(). Every attempt must raise a clear error, and a plugin that tries must end as failed rows
in every path that runs plugins (the run loop, its worker processes, the sweep program, the contract
checks), never as a score.
"""

import copy
import dataclasses
import pickle

import pytest
import torch
from torch import nn

from hti_bench.errors import LeakError, NotOnViewError
from hti_bench.harness import registry
from hti_bench.harness.runner import run
from hti_bench.harness.targets import TargetCache
from hti_bench.task import Task
from hti_bench.view import TaskView, seal

TINY = "moons-dropout[epochs=1,n_train=256,hidden=16,diffusion_steps=10,n_samples=24,anchors=(0.0,0.5,0.9),heldout=(0.25,0.7)]"
HELDOUT = (0.25, 0.7)
EVERYTHING = frozenset({"training_loss", "architecture"})


@pytest.fixture
def task():
    return registry.make_task(TINY, cache=TargetCache())


def test_the_view_refuses_a_held_out_network_and_anything_that_is_not_an_anchor(task):
    view = TaskView(task, requires=EVERYTHING)
    for lam in (*HELDOUT, 0.3, 0.99):
        with pytest.raises(LeakError, match=f"λ={lam} is not an anchor of task 'moons-dropout'.*anchor networks only"):
            view.anchor_network(lam)
    net = view.anchor_network(0.5)  # an anchor: allowed, and a copy that cannot change the task's network
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    assert not torch.equal(next(net.parameters()), next(task.network(0.5).parameters()))


@pytest.mark.parametrize(
    "name",
    [
        "network",
        "sample",
        "floor_sample",
        "seed_twin_sample",
        "task",
        "_task",
        "cache",
        "_cache",
        "heldout",
        "config",
        "spec",
        "prepare",
        "metrics",
        "__dict__",
    ],
)
def test_the_task_its_cache_and_its_held_out_lambdas_are_not_attributes_of_the_view(task, name):
    view = TaskView(task, requires=EVERYTHING)
    with pytest.raises(NotOnViewError, match="not reachable from a surrogate, by design"):
        getattr(view, name)
    assert not hasattr(view, name)  # an AttributeError too, so hasattr/getattr(…, default) behave


def _reachable(value, depth=0):
    """Values reachable from ``value`` through plain containers, dataclasses and bound methods."""
    yield value
    if depth > 3:
        return
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, (tuple, list, frozenset, set)):
        items = list(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = [getattr(value, f.name) for f in dataclasses.fields(value)]
    elif hasattr(value, "__self__"):  # a bound method: what it is bound to
        items = [value.__self__]
    else:
        items = []
    for item in items:
        yield from _reachable(item, depth + 1)


def test_walking_every_attribute_of_the_view_finds_no_task_cache_network_or_held_out_lambda(task):
    view = TaskView(task, requires=EVERYTHING)
    names = set(dir(view)) | {"__slots__"}
    assert not hasattr(view, "__dict__")
    with pytest.raises(TypeError):
        vars(view)
    for name in sorted(names):
        try:
            value = getattr(view, name)
        except LeakError:
            continue
        for reached in _reachable(value):
            assert not isinstance(reached, (Task, TargetCache, nn.Module)), (
                f"view.{name} reaches {type(reached).__name__}"
            )
            if isinstance(reached, float) and not isinstance(reached, bool):
                assert reached not in HELDOUT, f"view.{name} reveals the held-out λ {reached}"
            if callable(reached) and getattr(reached, "__self__", view) is not view and not isinstance(reached, type):
                assert not isinstance(getattr(reached, "__self__", None), Task), f"view.{name} is bound to the task"


def test_the_view_is_read_only_and_cannot_be_copied_into_a_task(task):
    view = TaskView(task, requires=EVERYTHING)
    with pytest.raises(LeakError, match="read-only"):
        view.anchors = (0.0, 0.25, 0.5, 0.7, 0.9)
    with pytest.raises(LeakError, match="cannot be pickled or copied"):
        pickle.dumps(view)
    with pytest.raises(LeakError, match="cannot be pickled or copied"):
        copy.copy(view)


def test_the_training_loss_and_data_end_with_fit(task):
    view = TaskView(task, requires=EVERYTHING)
    data = view.training_data()
    net = view.build_network()
    batch = tuple(d[:8] for d in data)
    assert view.per_example_loss(net, batch, torch.full((8,), 0.3)).shape == (8,)
    seal(view)  # what the harness does when fit() returns
    for call in (lambda: view.training_data(), lambda: view.per_example_loss(net, batch, torch.full((8,), 0.25))):
        with pytest.raises(
            LeakError, match="during fit\\(\\) only: a surrogate may not train at a λ it is asked to sample"
        ):
            call()
    assert view.sample_network(net, task.eval_conditions(), 3, torch.Generator().manual_seed(0)).shape == (2, 3, 2)


def test_what_was_not_declared_is_refused(task):
    view = TaskView(task, requires=())
    for call in (view.build_network, lambda: view.anchor_network(0.5), view.training_data):
        with pytest.raises(LeakError, match="declare requires"):
            call()
    assert view.anchors == ((0.0,), (0.5,), (0.9,)) and view.output_dim == 2  # metadata is always there


# ------------------------------------------------------------------------------ cheating plugins

CHEATER = """
import torch
from hti_bench.surrogate import Surrogate


class Cheater(Surrogate):
    name = "{name}"
    requires = frozenset({{"training_loss", "architecture"}})

    def fit(self, anchors, task=None, *, seed=0):
        self.anchors_ = anchors
        self.task_ = task
        {cheat}
        return self

    def sample(self, lam, conditions, n, seed):
        {sample}
        net = self.task_.anchor_network(0.5)
        return self.task_.sample_network(net, conditions, n, self.generator(seed)).float()
"""

#: name → (what fit() does, what sample() does first)
CHEATS = {
    "peek-network": ("net = task.anchor_network(0.25)  # the held-out network it is scored against", "pass"),
    "peek-task": ("net = task._task.network(0.25)", "pass"),
    "peek-cache": ("net = task.cache.get_or_train(None, 0.25, 0)", "pass"),
    "peek-heldout": ("lams = task.heldout", "pass"),
    # fits honestly, then trains at the queried λ inside sample()
    "retrain-at-query": (
        "pass",
        "batch = tuple(d[:64] for d in self.task_.training_data()); "
        "self.task_.per_example_loss(self.task_.build_network(), batch, torch.full((64,), float(lam)))",
    ),
}


@pytest.fixture
def cheaters(tmp_path, monkeypatch):
    folder = tmp_path / "cheaters"
    folder.mkdir()
    for name, (cheat, sample) in CHEATS.items():
        (folder / f"{name.replace('-', '_')}.py").write_text(CHEATER.format(name=name, cheat=cheat, sample=sample))
    monkeypatch.setenv("HTI_BENCH_PLUGIN_PATH", str(folder))
    registry.refresh()
    assert registry.broken_plugins() == []
    yield sorted(CHEATS)
    registry.refresh()


EXPECTED = {
    "peek-network": "LeakError: λ=0.25 is not an anchor",
    "peek-task": "NotOnViewError: a TaskView has no '_task'",
    "peek-cache": "NotOnViewError: a TaskView has no 'cache'",
    "peek-heldout": "NotOnViewError: a TaskView has no 'heldout'",
    "retrain-at-query": "LeakError: training_data is available during fit() only",
}


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_cheating_plugin_ends_as_failed_rows_with_the_reason(cheaters, tmp_path, jobs):
    summary = run(
        tasks=[TINY], surrogates=cheaters, seeds=[0], results_dir=tmp_path / f"res{jobs}", progress=False, jobs=jobs
    )
    rows = summary.results
    assert len(rows) == len(cheaters) * len(HELDOUT)
    assert (rows.status == "failed").all(), rows[["surrogate", "status", "error"]]
    assert rows.w2.isna().all()
    for name, message in EXPECTED.items():
        errors = rows[rows.surrogate == name].error
        assert errors.str.contains(message, regex=False).all(), (name, list(errors))


def test_the_sweep_program_hands_plugins_the_view_too(cheaters, tmp_path):
    from hti_bench.sweeping.program import execute, parse_config

    outcome = execute(parse_config({"task": TINY, "surrogate": "peek-network", "seed": 0}), results_dir=tmp_path)
    assert outcome.state == "failed" and "λ=0.25 is not an anchor" in outcome.error


def test_the_contract_checks_hand_plugins_the_view_too(cheaters):
    from hti_bench.testing import check_surrogate

    failures = dict(check_surrogate(registry.surrogate_classes()["peek-network"]))
    assert "check_fit_returns_self" in failures and "λ=0.25 is not an anchor" in failures["check_fit_returns_self"]
    assert "λ=0.25 is not an anchor" in failures["check_scored_by_the_harness"]
