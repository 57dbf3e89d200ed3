"""The open-condition query: surrogates answering at condition rows the anchor networks were never run
on, through the anchor oracle (AnchorSet.samples_at / restrict, backed by TaskView.anchor_samples)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hti_bench.errors import LeakError, OpenConditionError
from hti_bench.harness.registry import make_surrogate
from hti_bench.harness.unit import build_anchor_set
from hti_bench.testing.surrogates import OpenGaussian
from hti_bench.view import TaskView


@pytest.fixture
def task():
    return OpenGaussian()


def with_oracle(task, surrogate_requires=frozenset()):
    view = TaskView(task, requires=surrogate_requires)
    return dataclasses.replace(build_anchor_set(task, seed=0), oracle=view.anchor_samples), view


def test_samples_at_keeps_stored_rows_and_asks_the_oracle_only_for_new_ones(task):
    anchors, _ = with_oracle(task)
    known = anchors.conditions[:2]
    new = torch.tensor([[5.0, -5.0]])
    out = anchors.samples_at(torch.cat([known, new]), seed=3)
    assert out.shape == (3, 3, task.n_samples, 2)
    assert torch.equal(out[:, :2], anchors.samples[:, :2])
    # the new row comes from the anchor networks at that row: mean (1 + λ)·x at each anchor λ
    means = out[:, 2].mean(dim=1)
    for k, (lam,) in enumerate(task.anchors):
        assert torch.allclose(means[k], (1 + lam) * new[0], atol=0.25)
    assert torch.equal(out, anchors.samples_at(torch.cat([known, new]), seed=3))


def test_without_an_oracle_new_rows_raise_open_condition_error(task):
    anchors = build_anchor_set(task, seed=0)
    with pytest.raises(OpenConditionError, match="no oracle"):
        anchors.samples_at(torch.tensor([[9.0, 9.0]]))
    with pytest.raises(OpenConditionError, match="not among the anchor conditions"):
        anchors.index_of(torch.tensor([[9.0, 9.0]]))
    fitted = make_surrogate("mccann").fit(anchors)
    with pytest.raises(OpenConditionError):
        fitted.sample(0.25, torch.tensor([[9.0, 9.0]]), 4, seed=0)


def test_restrict_dedupes_rows_and_maps_queries_back(task):
    anchors, _ = with_oracle(task)
    q = torch.tensor([[1.0, 2.0], [0.5, 0.5], [1.0, 2.0]])
    local, index = anchors.restrict(q, seed=1)
    assert local.n_conditions == 2 and index.tolist()[0] == index.tolist()[2] != index.tolist()[1]
    assert torch.equal(local.conditions[index], q)


def test_the_oracle_runs_anchors_only_and_checks_shapes(task):
    _, view = with_oracle(task)
    out = view.anchor_samples(torch.zeros(4, 2), 6, seed=0)
    assert out.shape == (len(task.anchors), 4, 6, 2)
    with pytest.raises(ValueError, match=r"shape \(M, 2\)"):
        view.anchor_samples(torch.zeros(4, 3), 6, seed=0)


def test_the_oracle_never_reaches_a_held_out_network():
    """A trained task whose store refuses held-out λ: the oracle (anchors only) works all the same."""
    from hti_bench.harness.targets import TargetCache
    from hti_bench.tasks.reward_weighting import RewardWeighting

    class Refusing(TargetCache):
        def get_or_train(self, task, lam, seed):
            if any(abs(lam[0] - h[0]) < 1e-12 for h in task.heldout):
                raise LeakError(f"held-out λ={lam} reached")
            return super().get_or_train(task, lam, seed)

    task = RewardWeighting(cache=Refusing(), epochs=1, n_train=64, hidden=8, horizon=3, n_eval=3, n_samples=8)
    view = TaskView(task)
    out = view.anchor_samples(torch.randn(5, 6), 4, seed=0)
    assert out.shape == (3, 5, 4, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["nearest-anchor", "mixture", "mccann", "transport-spline"])
def test_interpolators_at_a_new_row_equal_a_fit_that_had_the_row(task, name):
    """Answering through the oracle is the same method as if the row had been an anchor condition."""
    anchors, _ = with_oracle(task)
    new = torch.tensor([[0.3, -0.7]])
    open_answer = make_surrogate(name).fit(anchors).sample(0.25, new, 16, seed=2)
    local, _ = anchors.restrict(new, seed=2)
    closed_answer = make_surrogate(name).fit(local).sample(0.25, new, 16, seed=2)
    assert torch.allclose(open_answer, closed_answer)


def test_simplex_on_one_hyperparameter_is_locate_bit_for_bit(task):
    anchors = build_anchor_set(task, seed=0)
    assert anchors.lambdas == task.anchors and all(len(a) == 1 for a in anchors.lambdas)
    for lam in (0.0, 0.13, 0.5, 0.77, 1.0):
        k, s = anchors.locate((lam,))
        assert anchors.locate(lam) == (k, s)  # a bare number too
        assert anchors.simplex((lam,)) == ((k, k + 1), (1.0 - s, s))
    with pytest.raises(ValueError, match="outside the anchors' range"):
        anchors.simplex((1.5,))
