"""The cancer model against the reference values of docs/evidence/ghaffari_spec.md (§6, §8), measured
there by running DTRGym 0.1.0 itself: a faithful port reproduces them to the printed digits."""

import numpy as np
import pytest

from hti_bench.tasks.control.ghaffari import GhaffariBatch, Noise, nk_penalty

QUIET = Noise(obs=0.0, state=0.0, pkpd=0.0)  # DTRGym's setting 1


def run(policy, noise=None, seed=0):
    env = GhaffariBatch(noise)
    env.reset([seed])
    total, steps = 0.0, 0
    while not env.done.all():
        _, r, terminated, _ = env.step([policy])
        total, steps = total + float(r[0]), steps + 1
    return total, steps, bool(terminated[0])


def test_seeded_reset_reproduces_the_environment():
    env = GhaffariBatch()
    obs = env.reset([0, 1])
    np.testing.assert_allclose(obs[0], [15.89531, 19.24177, 4.55962, 21.14373, 0, 9.04766, 4.42263], atol=1e-5)
    np.testing.assert_allclose(obs[1], [15.86398, 19.1583, 4.46255, 21.07708, 0, 9.04549, 4.46249], atol=1e-5)
    assert list(env.tau) == [5, 1]
    np.testing.assert_allclose(env.state[0, :3], [8306547.5, 215310832, 87.66458], rtol=1e-6)
    quiet = GhaffariBatch(QUIET).reset([3])
    np.testing.assert_allclose(quiet[0], [16.1181, 19.11383, 4.60517, 21.12873, 0, 9.21034, 4.60517], atol=1e-5)


def test_first_days_under_treatment_match_the_environment():
    env = GhaffariBatch()
    env.reset([0])
    want_obs = [
        [15.4803, 10.5472, 11.3151, 21.43, 0, 8.9225, 4.3768],
        [14.8687, 10.7279, 11.5137, 21.884, 0, 8.9651, 4.4014],
        [14.4548, 10.9929, 11.5893, 21.9443, 0, 8.9201, 4.4547],
    ]
    for obs_ref, r_ref in zip(want_obs, [0.0, 0.03405, 0.06498]):
        obs, r, terminated, truncated = env.step([[1.0, 1.0]])
        np.testing.assert_allclose(obs[0], obs_ref, atol=1e-4)
        assert r[0] == pytest.approx(r_ref, abs=1e-5)
        assert not terminated[0] and not truncated[0]


@pytest.mark.parametrize(
    "policy, noise, want, steps, cleared",
    [
        ((1.0, 1.0), QUIET, 124.6773, 53, True),  # tumour cleared: +100
        ((1.0, 0.0), QUIET, -55.0968, 85, True),  # NK/CD8 cells leave their bounds: −100
        ((2.0, 2.0), QUIET, -78.6873, 47, True),
        ((1.0, 1.0), None, 123.9125, 52, True),  # the paper's noisy setting, seed 0
        ((1.0, 0.0), None, 141.6972, 73, True),
    ],
)
def test_whole_episodes_match_the_environment(policy, noise, want, steps, cleared):
    total, n, terminated = run(policy, noise)
    assert n == steps and terminated == cleared
    assert total == pytest.approx(want, abs=1e-3)


def test_batched_episodes_equal_single_ones():
    # each episode keeps its own step size and random stream: batching changes nothing
    policies = np.array([[1.0, 1.0], [1.0, 0.0], [0.5, 3.0]])
    env = GhaffariBatch()
    env.reset([0, 4, 7])
    totals = np.zeros(3)
    for _ in range(30):
        _, r, _, _ = env.step(policies)
        totals += r
    for i, seed in enumerate([0, 4, 7]):
        single = GhaffariBatch()
        single.reset([seed])
        total = 0.0
        for _ in range(30):
            total += float(single.step(policies[i : i + 1])[1][0])
        assert total == pytest.approx(totals[i], abs=1e-9)


def test_nk_penalty_is_the_papers_double_log_and_scales_with_lambda():
    obs0 = np.array([[16.0, 19.0, 4.6, 21.1, 0.0, 9.2, 4.6]])
    assert nk_penalty(obs0, obs0)[0] == 0.0
    collapsed = obs0.copy()
    collapsed[0, 1] = 1.0
    want = -abs(np.log(1.0 + 9.2) / np.log(19.0 + 9.2) - 1.0)
    assert nk_penalty(collapsed, obs0)[0] == pytest.approx(want)
    # the shaped reward r + λ·pen moves with λ exactly as defined, and only through the penalty
    env = GhaffariBatch()
    env.reset([0])
    obs, r, _, _ = env.step([[1.0, 1.0]])
    pen = nk_penalty(obs, env.first_obs)[0]
    assert pen < 0
    shaped = [r[0] + lam * pen for lam in (0.0, 5.0, 10.0)]
    assert shaped[0] > shaped[1] > shaped[2] and shaped[2] - shaped[0] == pytest.approx(10 * pen)


def test_bad_options_and_actions_are_refused():
    with pytest.raises(ValueError, match="obs"):
        Noise(obs=-0.1)
    with pytest.raises(ValueError, match="max_t"):
        GhaffariBatch(max_t=0)
    env = GhaffariBatch()
    env.reset([0, 1])
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        env.step([[1.0, 1.0]])
    with pytest.raises(ValueError, match="NaN"):
        env.step([[1.0, np.nan], [1.0, 1.0]])


def test_ended_episodes_stay_ended_and_truncate_at_max_t():
    env = GhaffariBatch(QUIET, max_t=3)
    env.reset([0])
    flags = [env.step([[0.0, 0.0]])[3][0] for _ in range(3)]
    assert flags == [False, False, True] and env.done.all()
    obs, r, terminated, truncated = env.step([[0.0, 0.0]])
    assert r[0] == 0.0 and not terminated[0] and not truncated[0]


def test_compiled_and_numpy_integrators_agree():
    # the numba kernel and the numpy loop are the same algorithm: same steps, same states
    from hti_bench.tasks.control.ghaffari import PARAMETERS, _kernel, integrate_day

    assert _kernel() is not None, "numba is part of the stack (requirements.txt): the compiled path must run"
    env = GhaffariBatch()
    env.reset([0, 1, 2, 3])
    rng = np.random.default_rng(0)
    for day in range(12):
        a = rng.uniform(0, 1, (4, 2)) * [10, 8] * (day % 3 != 0)  # every third day untreated (stiff)
        p = {k: env.params[k] for k in PARAMETERS}
        y0, t0 = env.state.astype(np.float64), env.t.astype(np.float64)
        fast, calls_fast = integrate_day(y0, t0, a, p, env.tau)
        slow, calls_slow = integrate_day(y0, t0, a, p, env.tau, compiled=False)
        np.testing.assert_allclose(np.log1p(fast), np.log1p(slow), rtol=0, atol=1e-9)
        assert list(calls_fast) == list(calls_slow)
        env.step(a)


def test_vec_env_shapes_the_reward_and_auto_resets():
    from hti_bench.tasks.control.ghaffari import vec_env

    envs = {lam: vec_env(2, lam, seed=5, noise=QUIET, max_t=4) for lam in (0.0, 10.0)}
    obs = {lam: e.reset() for lam, e in envs.items()}
    np.testing.assert_array_equal(obs[0.0], obs[10.0])
    plain = GhaffariBatch(QUIET, max_t=4)
    first = plain.reset([5, 6])
    for day in range(4):
        a = np.array([[1.0, 1.0], [0.0, 0.0]])
        got = {lam: e.step(a) for lam, e in envs.items()}
        want_obs, want_r, _, _ = plain.step(a)
        pen = nk_penalty(want_obs, first)
        np.testing.assert_allclose(got[0.0][1], want_r, rtol=1e-6)
        np.testing.assert_allclose(got[10.0][1], want_r + 10.0 * pen, rtol=1e-5)
    # day 4 = max_t: both episodes truncate, report their last observation, and restart seeded 7 and 8
    _, _, dones, infos = got[0.0]
    assert dones.all() and all(i["TimeLimit.truncated"] for i in infos)
    np.testing.assert_array_equal(infos[0]["terminal_observation"], want_obs[0])
    np.testing.assert_array_equal(got[0.0][0], GhaffariBatch(QUIET).reset([7, 8]))
    with pytest.raises(ValueError, match="n_envs"):
        vec_env(0, 1.0, seed=0)
