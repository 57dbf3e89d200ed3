"""Helpers several test modules share (on the test path through pytest's ``pythonpath``)."""

from hti_bench.harness.results import COLUMNS, SCHEMA_VERSION


def row(surrogate="a", seed=0, lam=0.25, w2=1.0, status="ok", date="2026-01-01T00:00:00", task="t"):
    """One results row with every column, the given values and plausible ones elsewhere."""
    r = {c: "" for c in COLUMNS}
    r.update(
        task=task,
        track="default",
        surrogate=surrogate,
        config=surrogate,
        seed=seed,
        lambda_heldout=lam,
        hyperparameter="lambda",
        status=status,
        w1=w2 / 2,
        w2=w2,
        w2sq=w2**2,
        floor_w1=0.1,
        floor_w2=0.1,
        floor_w2sq=0.01,
        n_conditions=2,
        n_samples=10,
        fit_seconds=1.0,
        sample_seconds=0.1,
        uses_training_loss=False,
        run_date=date,
        schema_version=SCHEMA_VERSION,
    )
    return r


#: Budgets that make a PPO policy task (cancer, reacher) cheap enough for a unit test: one short rollout
#: per network, a few behaviour and closed-loop episodes. Enough to exercise training and the cache,
#: not to learn. A test adds its λ values and what its environment needs.
TINY_POLICY = dict(
    n_envs=2,
    ppo_n_steps=64,
    hidden=(8,),
    behaviour_episodes=2,
    n_conditions=12,
    closed_loop_episodes=3,
    closed_loop_draws=4,
    n_samples=16,
)
