"""The contract every built-in task must meet (hti_bench.testing's task checks), one case per (task, check) on
tiny budgets; a broken task for each rule, which its check must fail with a message that says what to fix;
and the worked task of docs/guides/add-a-task.md, registered as a plugin and checked through the CLI."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from hti_bench.cli import main
from hti_bench.harness.registry import task_classes
from hti_bench.task import TrainedTask
from hti_bench.tasks.gaussian_path import GaussianPath
from hti_bench.tasks.noisy_regression import NoisyRegression
from hti_bench.testing.tasks import (
    TASK_CHECKS,
    KeyProbe,
    TaskUnderCheck,
    check_task,
    run_task_check,
    target_key,
    target_keys_in_new_process,
)

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "add-a-task.md"

#: Each built-in task on the smallest budget that still trains every network (``{tensor}``: a small data file).
TINY = {
    "beta-vae": "beta-vae[epochs=1,hidden=16,latent=2,n_eval=4,n_fit=4,n_samples=8]",
    "cancer": "cancer[anchors=(0.0,10.0),heldout=(5.0,),ppo_steps=128,n_envs=2,ppo_n_steps=64,hidden=(8,),"
    "behaviour_episodes=2,n_conditions=8,closed_loop_episodes=2,closed_loop_draws=2,max_days=8,n_samples=8]",
    "gaussian-path": "gaussian-path[n_samples=16]",
    "gaussian-plane": "gaussian-plane[n_samples=16,design=grid:2x2,heldout=((0.5,0.5),)]",
    "moons-dropout": "moons-dropout[epochs=1,n_train=128,hidden=8,diffusion_steps=5,n_samples=8,"
    "anchors=(0.0,0.9),heldout=(0.5,)]",
    "moons-dropout-2d": "moons-dropout-2d[epochs=1,n_train=128,hidden=8,diffusion_steps=5,n_samples=8,"
    "design=grid:2x2,heldout=((0.5,0.5),)]",
    "noisy-regression": "noisy-regression[epochs=2,n_train=64,heldout=(0.3,)]",
    "noisy-regression-2d": "noisy-regression-2d[epochs=2,n_train=64,design=grid:2x2,heldout=((1.0,1.0),)]",
    "quantile": "quantile[epochs=1,hidden=8,n_eval=8,n_fit=8,heldout=(0.5,)]",
    "reacher": "reacher[anchors=(1.0,5.0),heldout=(3.0,),ppo_steps=128,n_envs=2,ppo_n_steps=64,hidden=(8,),"
    "behaviour_episodes=1,n_conditions=8,closed_loop_episodes=2,closed_loop_draws=2,n_samples=8]",
    "reward-weighting": "reward-weighting[epochs=1,n_train=128,hidden=8,horizon=4,n_eval=4,n_samples=8,heldout=(0.6,)]",
    "reward-weighting-2d": "reward-weighting-2d[epochs=1,n_train=128,hidden=8,horizon=4,n_eval=4,n_samples=8,"
    "design=grid:2x2,heldout=((1.0,1.0),)]",
    "semicircles": "semicircles[n_samples=16]",
    "tensor": "tensor[path={tensor}]",
}

#: The packages each task needs beyond the core ones (the task is skipped without them).
NEEDS = {"cancer": ("stable_baselines3",), "reacher": ("stable_baselines3", "mujoco")}


@pytest.fixture(scope="session")
def tensor_file(tmp_path_factory):
    """[T, N, D + C] outputs of three classes at five λ, moving along a W₂ geodesic."""
    lambdas = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    rng = np.random.default_rng(0)
    label = np.repeat(np.arange(3), 12).astype(np.float32)
    z = rng.standard_normal((len(label), 2))
    data = np.stack([np.column_stack([(label + lam)[:, None] + (0.2 + 0.3 * lam) * z, label]) for lam in lambdas])
    path = tmp_path_factory.mktemp("tensor") / "outputs.npz"
    np.savez(path, data=data.astype(np.float32), lambdas=lambdas, y_dim=2)
    return path


def spec_of(name, tensor_file, table=None):
    for module in NEEDS.get(name, ()):
        pytest.importorskip(module)
    return (table or TINY)[name].format(tensor=tensor_file)


def test_every_built_in_task_has_a_tiny_budget():
    assert set(TINY) == set(task_classes()), "give each built-in task small options in TINY"


@pytest.mark.parametrize("check", list(TASK_CHECKS), ids=list(TASK_CHECKS))
@pytest.mark.parametrize("name", list(TINY), ids=list(TINY))
def test_task_contract(name, check, tensor_file):
    subject = TaskUnderCheck(spec_of(name, tensor_file), fresh_process=False)
    failure = run_task_check(check, subject)
    assert failure is None, f"{name} fails {check}:\n{failure}"


def test_target_keys_are_the_same_in_a_new_process():
    """One new process for every trained task: the cache-key check's fresh-process part, at once."""
    specs = [TINY[n] for n, cls in task_classes().items() if issubclass(cls, TrainedTask)]
    assert len(specs) >= 8
    here = [target_key(TaskUnderCheck(s).make(cache=KeyProbe())) for s in specs]
    assert all(here) and target_keys_in_new_process(specs) == here


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TINY), ids=list(TINY))
def test_task_contract_at_the_default_budget(name, tensor_file):
    spec = spec_of(name, tensor_file, {**{n: n for n in TINY}, "tensor": TINY["tensor"]})
    assert check_task(spec) == []


# ---------------------------------------------------------------------------------------- failure paths


def failure(check, cls, spec=None, cache_dir=None):
    """The message ``check`` fails ``cls`` with (the last line of its traceback)."""
    subject = TaskUnderCheck(spec or cls.name, task_class=cls, cache_dir=cache_dir, fresh_process=False)
    msg = run_task_check(check, subject)
    assert msg is not None, f"{cls.__name__} passes {check}, but it breaks its rule"
    return msg.splitlines()[-1]


class WrongShape(GaussianPath):
    name = "wrong-shape"

    @property
    def output_dim(self):
        return 3  # declares D = 3, samples 2 columns


class DuplicateRows(GaussianPath):
    name = "duplicate-rows"

    def eval_conditions(self):
        return torch.tensor([[0.0], [1.0], [1.0]])


class Unseeded(GaussianPath):
    name = "unseeded"

    def sample(self, lam, conditions, n, seed):
        return super().sample(lam, conditions, n, int(torch.randint(0, 2**31, ())))


class NoValidation(GaussianPath):
    """Skips Task's validation of the λ lists, so broken lists get through to the checks."""

    name = "no-validation"

    def _validate_lambdas(self):
        pass


class Lenient(GaussianPath):
    name = "lenient"

    def __init__(self, **overrides):
        known = {f.name for f in dataclasses.fields(self.Config)}
        super().__init__(**{k: v for k, v in overrides.items() if k in known or k == "cache"})


class WrongError(GaussianPath):
    name = "wrong-error"

    def __init__(self, **overrides):
        if "no_such_option" in overrides:
            raise KeyError("no_such_option")
        super().__init__(**overrides)


class ClaimsArchitecture(GaussianPath):
    name = "claims-architecture"
    capabilities = frozenset({"architecture"})


class Unexplained(GaussianPath):
    name = "unexplained"
    capability_notes: ClassVar[dict[str, str]] = {}


class ClaimsClosedLoop(GaussianPath):
    name = "claims-closed-loop"
    closed_loop = True


class MeanLoss(NoisyRegression):
    name = "mean-loss"

    def per_example_loss(self, network, batch, lam):
        return super().per_example_loss(network, batch, lam).mean()


class BlindLoss(NoisyRegression):
    name = "blind-loss"

    def per_example_loss(self, network, batch, lam):
        return super().per_example_loss(network, batch, torch.ones_like(lam))


class BatchLoss(NoisyRegression):
    name = "batch-loss"

    def per_example_loss(self, network, batch, lam):
        return super().per_example_loss(network, batch, lam.mean().expand_as(lam))


class DetachedLoss(NoisyRegression):
    """(It offers only the loss: a detached loss would not train its own networks either.)"""

    name = "detached-loss"
    capabilities = frozenset({"training_loss"})
    capability_notes: ClassVar[dict[str, str]] = {"architecture": "a test task"}

    def per_example_loss(self, network, batch, lam):
        return super().per_example_loss(network, batch, lam).detach()


class HiddenState(NoisyRegression):
    """Scales its outputs by a plain attribute, which the network's state_dict does not carry."""

    name = "hidden-state"

    def build_network(self):
        net = super().build_network()
        net.scale = 1.0
        return net

    def train_target(self, lam, seed):
        net = super().build_network()
        torch.manual_seed(seed)
        net.scale = 2.0
        return net.eval()

    def sample_network(self, network, conditions, n, generator):
        return network.scale * super().sample_network(network, conditions, n, generator)


class AddressKey(NoisyRegression):
    """Keys its networks by an object, whose repr is its address: another in each build."""

    name = "address-key"

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self.made_by = object()

    def cache_signature(self):
        return {**super().cache_signature(), "made_by": self.made_by}


class TaskOnlyKey(NoisyRegression):
    name = "task-only-key"

    def cache_signature(self):
        return {"task": self.name}


class KeysEverything(NoisyRegression):
    """Keys its networks by every option, the sample count (``cache=False``) too."""

    name = "keys-everything"

    def cache_signature(self):
        return {"task": self.name, "config": dataclasses.asdict(self.config)}


class LossySpec(GaussianPath):
    """Its spec leaves out the options that differ from their defaults."""

    name = "lossy-spec"

    @property
    def spec(self):
        return self.name


class NoMetrics(GaussianPath):
    name = "no-metrics"

    def metrics(self, lam, conditions, samples):
        return {"mean": "high"}


class CrashesInTheHarness(GaussianPath):
    """Samples fine where the checks look, but not at every anchor the harness asks."""

    name = "crashes-in-the-harness"

    def sample(self, lam, conditions, n, seed):
        if lam == self.anchors[1]:
            raise RuntimeError("the middle anchor is missing")
        return super().sample(lam, conditions, n, seed)


@pytest.mark.parametrize(
    "check, cls, spec, expected",
    [
        (
            "check_task_outputs",
            WrongShape,
            "wrong-shape[n_samples=16]",
            r"returned shape \(3, 16, 2\), expected \(M, n, D\) = \(3, 16, 3\)",
        ),
        ("check_task_outputs", DuplicateRows, None, "1 duplicate row"),
        ("check_task_outputs", NoMetrics, None, "metrics\\(\\) gave mean='high', not a number"),
        ("check_task_same_seed_same_targets", Unseeded, None, "with seed 7 gave different draws on two calls"),
        ("check_task_lambdas", NoValidation, "no-validation[heldout=(0.5,)]", "is also an anchor"),
        ("check_task_lambdas", NoValidation, "no-validation[heldout=(1.5,)]", "outside the task's range"),
        ("check_task_lambdas", NoValidation, "no-validation[validation=(0.25,)]", "is also an anchor or a held-out"),
        ("check_task_lambdas", NoValidation, "no-validation[anchors=(0.0,0.5),heldout=(0.75,)]", "outside the anchors"),
        ("check_task_lambdas", NoValidation, "no-validation[anchors=(0.0,0.5,0.5,1.0)]", "listed twice"),
        ("check_task_lambdas", NoValidation, "no-validation[anchors=(0.5,)]", "need at least 2 anchors"),
        ("check_task_refuses_bad_options", Lenient, None, "no_such_option=1 was accepted"),
        ("check_task_refuses_bad_options", WrongError, None, "raised KeyError .* not ConfigError"),
        ("check_task_refuses_bad_options", NoValidation, None, "outside the range .* was accepted"),
        ("check_task_capabilities", ClaimsArchitecture, None, "view.build_network\\(\\) .* raised AttributeError"),
        ("check_task_capabilities", Unexplained, None, "does not say why: add capability_notes"),
        ("check_task_capabilities", ClaimsClosedLoop, None, "closed_loop_metrics\\(\\) is not implemented"),
        ("check_task_capabilities", MeanLoss, "mean-loss[epochs=1]", r"returned \(\), expected \(4,\)"),
        ("check_task_capabilities", BlindLoss, "blind-loss[epochs=1]", "must use the λ it is given"),
        ("check_task_capabilities", BatchLoss, "batch-loss[epochs=1]", "must use its own λ"),
        ("check_task_capabilities", DetachedLoss, "detached-loss[epochs=1]", "is detached from the network's weights"),
        ("check_task_capabilities", HiddenState, "hidden-state[epochs=1]", "differs from sample\\(\\) at that anchor"),
        ("check_task_cache_key", AddressKey, None, "give the cache keys .* plain values"),
        ("check_task_cache_key", TaskOnlyKey, None, "changing the option \\w+ .* keeps the cache key"),
        ("check_task_cache_key", KeysEverything, None, "option n_samples .* declared cache=False"),
        ("check_task_cache_key", LossySpec, "lossy-spec[n_samples=8]", "does not rebuild it"),
        ("check_task_scored_by_the_harness", CrashesInTheHarness, None, "the middle anchor is missing"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_a_task_that_breaks_a_rule_fails_its_check(check, cls, spec, expected, tmp_path):
    message = failure(check, cls, spec, cache_dir=str(tmp_path))
    assert re.search(expected, message), message


def test_the_key_check_builds_the_task_again_in_a_new_process():
    subject = TaskUnderCheck(TINY["noisy-regression"])  # fresh_process=True, as hti-bench check runs it
    assert run_task_check("check_task_cache_key", subject) is None
    with pytest.raises(AssertionError, match="could not build unknown-task .* register it"):
        target_keys_in_new_process(["unknown-task"])


# ---------------------------------------------------------------------------------------- the guide's worked task


def worked_task_code():
    """The code block after the ``worked-task`` marker of the add-a-task guide."""
    text = GUIDE.read_text()
    match = re.search(r"<!-- worked-task -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"{GUIDE} has no ```python block after <!-- worked-task -->"
    return match.group(1)


@pytest.fixture
def worked_task_plugin(tmp_path, monkeypatch):
    """The guide's worked task installed as a plugin: its module and a distribution that registers it under
    the ``hti_bench.tasks`` entry points (what ``pip install`` of the guide's pyproject.toml writes), on the
    path of this process and of the new ones the checks start."""
    (tmp_path / "my_tasks.py").write_text(worked_task_code())
    info = tmp_path / "my_tasks-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-tasks\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[hti_bench.tasks]\nsmooth-sine = my_tasks:SmoothSine\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p))
    yield tmp_path
    sys.modules.pop("my_tasks", None)


def test_the_guide_s_worked_task_passes_the_task_checks(worked_task_plugin, capsys):
    assert "smooth-sine" in task_classes()
    assert main(["check", "--task", "smooth-sine", "--cache", str(worked_task_plugin / "cache")]) == 0
    out = capsys.readouterr().out
    assert all(f"ok   smooth-sine {name}" in out for name in TASK_CHECKS) and "every task check passed" in out


def test_the_check_command_fails_a_broken_plugin_task(worked_task_plugin, capsys):
    with open(worked_task_plugin / "my_tasks.py", "a") as module:
        module.write(
            "\n\nfrom hti_bench.tasks.gaussian_path import GaussianPath  # noqa: E402\n\n\n"
            "class Unexplained(GaussianPath):\n"
            "    name = 'unexplained'\n"
            "    capability_notes = {}\n"
        )
    with open(worked_task_plugin / "my_tasks-0.1.dist-info" / "entry_points.txt", "a") as points:
        points.write("unexplained = my_tasks:Unexplained\n")
    assert main(["check", "--task", "unexplained[n_samples=8]"]) == 1
    out = capsys.readouterr().out
    assert (
        "FAIL unexplained[n_samples=8] check_task_capabilities: AssertionError: the task does not offer "
        "'architecture' and does not say why" in out
    )
    assert "ok   unexplained[n_samples=8] check_task_outputs" in out and "1 of the task checks failed" in out
