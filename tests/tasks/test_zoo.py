"""The β-VAE and reward-weighting tasks, on tiny budgets: each trains, moves the right way
with λ, and exposes a per-example λ-aware loss."""

import pytest
import torch

from hti_bench.harness.registry import make_task
from hti_bench.harness.targets import TargetCache
from hti_bench.tasks.reward_weighting import step


def test_higher_beta_blurs_reconstructions_and_lowers_the_kl():
    task = make_task("beta-vae[epochs=15,hidden=64,n_eval=8,n_fit=8]", cache=TargetCache())
    conds = task.eval_conditions()
    low, high = task.sample(0.25, conds, 16, seed=0), task.sample(4.0, conds, 16, seed=0)
    assert low.shape == (8, 16, 64) and 0 <= float(low.min()) and float(low.max()) <= 1
    assert task.metrics(4.0, conds, high)["recon_mse"] > task.metrics(0.25, conds, low)["recon_mse"]
    assert task.kl(4.0, conds) < task.kl(0.25, conds)


def test_beta_vae_loss_takes_beta_per_example():
    task = make_task("beta-vae[hidden=16]", cache=TargetCache())
    net = task.build_network()
    x = task.training_data()[0][:6]
    torch.manual_seed(0)
    mixed = task.per_example_loss(net, (x,), torch.tensor([0.5, 0.5, 0.5, 2.0, 2.0, 2.0]))
    torch.manual_seed(0)
    low = task.per_example_loss(net, (x,), torch.full((6,), 0.5))
    assert torch.allclose(mixed[:3], low[:3]) and (mixed[3:] > low[3:]).all()


def test_a_higher_penalty_gives_smaller_actions():
    task = make_task("reward-weighting[epochs=10,n_train=1024,batch_size=64,hidden=32,n_eval=12]", cache=TargetCache())
    conds = task.eval_conditions()
    low, high = task.sample(0.1, conds, 64, seed=0), task.sample(3.0, conds, 64, seed=0)
    assert low.shape == (12, 64, 2)
    assert high.norm(dim=-1).mean() < 0.8 * low.norm(dim=-1).mean()
    # the metric scores executed actions under the λ-weighted reward: zero actions cost no effort
    zero = torch.zeros_like(low)
    still = step(conds, torch.zeros(12, 2))
    expected = -(still[:, 0:2] - still[:, 4:6]).pow(2).sum(dim=1).mean()
    assert abs(task.metrics(3.0, conds, zero)["step_reward"] - float(expected)) < 1e-5


@pytest.mark.parametrize(
    "spec",
    [
        "quantile[epochs=1,hidden=8]",
        "beta-vae[epochs=1,hidden=16]",
        "reward-weighting[epochs=1,n_train=256,hidden=8]",
        "moons-dropout[epochs=1,n_train=256,hidden=16,diffusion_steps=10]",
        "noisy-regression[epochs=2]",
    ],
)
def test_every_trained_task_is_cached_after_its_first_training(spec):
    cache = TargetCache()
    task = make_task(spec, cache=cache)
    lam = task.anchors[0]
    first = task.sample(lam, task.eval_conditions(), 3, seed=0)
    trained, hits = cache.trained, cache.hits
    again = make_task(spec, cache=cache)  # a fresh object: nothing held in memory
    assert torch.equal(again.sample(lam, again.eval_conditions(), 3, seed=0), first)
    assert (cache.trained, cache.hits) == (trained, hits + 1)
