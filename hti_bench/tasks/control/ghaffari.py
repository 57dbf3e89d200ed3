"""The Ghaffari cancer-treatment model, simulated for a batch of episodes at once (numpy).

This is the environment the HTI paper's cancer task used through DTRGym 0.1.0
(``GhaffariCancerEnv-continuous``, its default "setting 4": observation, initial-state and PK/PD
noise), re-implemented from the model's equations and the environment's documented behaviour:
Ghaffari, Nazari & Ahmadi, "A mixed radiotherapy and chemotherapy model for treatment of cancer
with metastasis", Math. Methods Appl. Sci. 39 (2016), doi:10.1002/mma.3887, with the constants,
scaling, bounds, episode rules and reward of DTRGym 0.1.0 (github GilesLuo/DTRGym, file
``DTRGym/ghaffari_cancer_env.py``, tag v0.1.0). docs/evidence/ghaffari_spec.md restates all of it with
line references; section numbers below (§n) point there. No DTRGym code is used or copied.

One environment step is one day. The state has 11 entries (§2): tumour T_p, natural-killer cells
N_p and CD8⁺ T cells L_p at the primary site, circulating lymphocytes C, the same three at the
metastatic site (T_s, N_s, L_s), the chemotherapy drug M and the irradiated compartments u, v, x.
The action is (D, v_M): a radiation kill rate per day in [0, 10] and a chemotherapy infusion rate
in [0, 8], held for the day. The observation is ln of the 7 populations with ±10 % multiplicative
noise (§7). The reward is DTRGym's, 1 − ln T / ln T₀ on the state before the step, ±100 when the
episode ends by tumour clearance or by a population leaving its bounds (§7); the paper's λ-shaped
term on the natural-killer count is :func:`nk_penalty` (§9).

Fidelity: each day is integrated with the same explicit Bogacki–Shampine 3(2) controller as scipy's
``solve_ivp(method="RK23", rtol=1e-2, atol=1e-4)`` (§5), step by step per episode, with the
in-place clamping of negative states that DTRGym's right-hand side performs, and the state rounded
to float32 between days. The random draws follow the environment's order on a legacy
``numpy.random.RandomState`` per episode (§6), so a seeded episode reproduces DTRGym's seeded
episode (tests/tasks/control/test_ghaffari.py checks the spec's reference values). The one deliberate difference:
DTRGym re-seeds numpy's *global* generator from OS entropy at every unseeded reset; here every
episode is seeded, so runs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Nominal model parameters, in DTRGym's dictionary order (§3; its order fixes the random draws of
#: the PK/PD noise). ``K_2C`` is in the dictionary (and perturbed) but used nowhere (§14.8).
PARAMETERS: dict[str, float] = {
    "delta": 0.15,
    "a1": 0.431,
    "b1": 1.02e-9,
    "c1": 6.41e-11,
    "d1": 2.34,
    "l": 2.09,
    "s": 8.39e-2,
    "e1": 2.08e-7,
    "f1": 4.12e-2,
    "p1": 3.42e-6,
    "m1": 2.04e-1,
    "j1": 2.49e-2,
    "k1": 3.66e7,
    "q1": 1.42e-6,
    "r11": 1.1e-7,
    "r12": 6.5e-11,
    "u1": 3e-10,
    "K_1T": 100.0,
    "K_1L": 10.0,
    "K_1N": 10.0,
    "K_1C": 10.0,
    "alpha": 7.5e8,
    "beta": 1.2e-2,
    "mu": 0.9,
    "a2": 5.0,
    "b2": 1e-7,
    "c2": 6.41e-12,
    "d2": 5.0,
    "e2": 2.08e-7,
    "f2": 3.5e-2,
    "p2": 1e-6,
    "m2": 1.8e-1,
    "j2": 1.6e-2,
    "k2": 3.66e7,
    "q2": 1e-6,
    "r21": 2e-7,
    "r22": 7.5e-11,
    "u2": 3e-10,
    "K_2T": 100.0,
    "K_2L": 10.0,
    "K_2N": 10.0,
    "K_2C": 10.0,
    "gamma1": 0.04,
    "gamma2": 0.1,
    "gamma3": 0.1,
    "epsilon": 0.05,
    "alpha1": 1e-4,
    "alpha2": 1e-5,
    "W_1T": 0.01,
    "W_1N": 1.0,
    "W_1L": 1.0,
    "W_1C": 1.0,
    "W_2T": 1.0,
    "W_2N": 1.0,
    "W_2L": 1.0,
}

#: Initial populations before noise (§2: T_p, N_p, L_p, C, T_s, N_s, L_s); M, u, v, x start at 0.
INITIAL = np.array([1e7, 2e8, 1e2, 1.5e9, 0.0, 1e4, 1e2])

#: Upper bounds of the 7 populations (§1): leaving them ends the episode with −100.
STATE_HIGH = np.array([1e11, 1e10, 1e10, 1e11, 1e11, 1e10, 1e10])
#: Observation bounds: ln of the state bounds (§1).
OBS_HIGH = np.log(STATE_HIGH).astype(np.float32)
#: Action bounds (§1): radiation kill rate D per day, chemotherapy infusion rate v_M.
ACTION_LOW = np.array([0.0, 0.0], dtype=np.float32)
ACTION_HIGH = np.array([10.0, 8.0], dtype=np.float32)
#: Episode length in days (§1), and DTRGym's terminal rewards (§7).
MAX_T = 200
TERMINAL_REWARD = 100.0

# scipy RK23 (Bogacki–Shampine): tableau, error weights and step controller (§5)
_RTOL, _ATOL = 1e-2, 1e-4
_E = np.array([5 / 72, -1 / 12, -1 / 9, 1 / 8])
_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0
_ERROR_EXPONENT = -1.0 / 3.0
_N_STATE = 11


@dataclass(frozen=True)
class Noise:
    """The environment's noise levels (§1); the defaults are the paper's (DTRGym's setting 4).
    All zero is DTRGym's noise-free setting 1, a deterministic test case."""

    obs: float = 0.2
    state: float = 0.5
    pkpd: float = 0.1

    def __post_init__(self) -> None:
        for name in ("obs", "state", "pkpd"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0):
                raise ValueError(f"noise level {name!r} must be a number in [0, 1], got {value!r}")


def nk_penalty(obs: np.ndarray, obs0: np.ndarray) -> np.ndarray:
    """The paper's shaping term (§9), per episode: −|ln N / ln N₀ − 1| with N = max(e, o[1] + o[5])
    on the post-step observation and N₀ the same on the episode's first observation. o[1] and o[5]
    are already logs, so this is a log of a sum of logs: the paper's definition, kept as it is."""
    n = np.maximum(np.e, obs[..., 1].astype(np.float64) + obs[..., 5])
    n0 = np.maximum(np.e, obs0[..., 1].astype(np.float64) + obs0[..., 5])
    return -np.abs(np.log(n) / np.log(n0) - 1.0)


def _rhs(t: np.ndarray, y: np.ndarray, action: np.ndarray, p: dict[str, np.ndarray], tau: np.ndarray) -> np.ndarray:
    """dy/dt for a batch (B, 11) at times t (B,), actions (B, 2), parameters p[name] (B,) (§4).

    Negative entries of ``y`` are set to 0 in place first, as DTRGym's right-hand side does: the
    integrator relies on that side effect for the states it keeps (§5)."""
    np.maximum(y, 0.0, out=y)
    tp, np_, lp, c, ts, ns, ls, m, u, v, x = y.T
    dose, infusion = action[:, 0], action[:, 1]
    lpl, lsl = lp ** p["l"], ls ** p["l"]
    kill_p = p["d1"] * lpl / np.maximum(1.0, p["s"] * tp ** p["l"] + lpl)
    kill_s = p["d2"] * lsl / np.maximum(1.0, p["s"] * ts ** p["l"] + lsl)
    out = np.empty_like(y)
    out[:, 0] = (
        p["a1"] * tp * (1 - p["b1"] * tp)
        - p["c1"] * np_ * tp
        - kill_p * tp
        - p["alpha1"] * tp
        - dose * tp
        + p["gamma1"] * u
        - p["K_1T"] * m * tp / (p["W_1T"] + tp)
    )
    out[:, 1] = (
        p["e1"] * c
        - p["p1"] * np_ * tp
        - p["f1"] * np_
        - p["epsilon"] * dose * np_
        + p["gamma2"] * v
        - p["K_1N"] * m * np_ / (p["W_1N"] + np_)
    )
    out[:, 2] = (
        -p["m1"] * lp
        + p["j1"] * tp / (p["k1"] + tp) * lp
        - p["q1"] * lp * tp
        + p["r11"] * np_ * tp
        + p["r12"] * c * tp
        - p["u1"] * np_ * lp**2
        - p["epsilon"] * dose * lp
        + p["gamma3"] * x
        - p["K_1L"] * m * lp / (p["W_1L"] + lp)
    )
    out[:, 3] = p["alpha"] - p["beta"] * c - p["K_1C"] * m * c / (p["W_1C"] + c)
    seeded = t > tau  # the metastatic site switches on strictly after τ days
    out[:, 4] = np.where(
        seeded,
        p["a2"] * ts * (1 - p["b2"] * ts)
        - p["c2"] * ns * ts
        - kill_s * ts
        + p["alpha2"] * tp * (t - tau)
        - p["K_2T"] * m * ts / (p["W_2T"] + ts),
        0.0,
    )
    out[:, 5] = np.where(
        seeded, p["e2"] * c - p["p2"] * ns * ts - p["f2"] * ns - p["K_2N"] * m * ns / (p["W_2N"] + ns), 0.0
    )
    out[:, 6] = np.where(
        seeded,
        -p["m2"] * ls
        + p["j2"] * ts / (p["k2"] + ts) * ls
        - p["q2"] * ls * ts
        + p["r21"] * ns * ts
        + p["r22"] * c * ts
        - p["u2"] * ns * ls**2
        - p["K_2L"] * m * ls / (p["W_2L"] + ls),
        0.0,
    )
    out[:, 7] = -p["mu"] * m + infusion
    out[:, 8] = dose * tp - (p["gamma1"] + p["delta"]) * u
    out[:, 9] = dose * np_ - (p["gamma2"] + p["delta"]) * v
    out[:, 10] = dose * lp - (p["gamma3"] + p["delta"]) * x
    return out


def _rms(z: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(z * z, axis=1))


def integrate_day(
    y0: np.ndarray, t0: np.ndarray, action: np.ndarray, p: dict[str, np.ndarray], tau: np.ndarray, compiled: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate every episode of the batch over [t0, t0 + 1] (§5); returns (y, right-hand-side calls).

    Each episode has its own adaptive step, as scipy's RK23 would take for it alone. With numba
    installed (and ``compiled``) a compiled loop runs the episodes; otherwise a numpy loop advances
    the episodes that have not reached t0 + 1 yet, together. Both are the same algorithm
    (tests/tasks/control/test_ghaffari.py checks that they agree)."""
    b = y0.shape[0]
    y = np.array(y0, dtype=np.float64)
    t = np.array(t0, dtype=np.float64)
    end = t + 1.0
    calls = np.zeros(b, dtype=np.int64)
    kernel = _kernel() if compiled else None
    if kernel is not None:
        table = np.ascontiguousarray(np.stack([p[k] for k in PARAMETERS], axis=1), dtype=np.float64)
        kernel(y, t, np.ascontiguousarray(action, dtype=np.float64), table, np.asarray(tau, dtype=np.float64), calls)
        return y, calls

    names = list(p)
    table = np.stack([p[k] for k in names], axis=1)  # (B, parameters): one gather per call, not 55

    def f(rows: np.ndarray, tt: np.ndarray, yy: np.ndarray) -> np.ndarray:
        calls[rows] += 1
        if rows.size == b:
            cols, act, tau_r = table, action, tau
        else:
            cols, act, tau_r = table[rows], action[rows], tau[rows]
        return _rhs(tt, yy, act, dict(zip(names, cols.T)), tau_r)

    every = np.arange(b)
    f0 = f(every, t, y)  # clamps y in place, as the solver's first call does
    # Hairer's initial step (scipy's select_initial_step, error-estimator order 2)
    scale0 = _ATOL + np.abs(y) * _RTOL
    d0, d1 = _rms(y / scale0), _rms(f0 / scale0)
    h0 = np.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / np.where(d1 > 0, d1, 1.0))
    h0 = np.minimum(h0, end - t)
    f1 = f(every, t + h0, y + h0[:, None] * f0)
    d2 = _rms((f1 - f0) / scale0) / h0
    big = np.maximum(d1, d2)
    h1 = np.where(big <= 1e-15, np.maximum(1e-6, h0 * 1e-3), (0.01 / np.where(big > 0, big, 1.0)) ** (1 / 3))
    h_abs = np.minimum.reduce([100 * h0, h1, end - t])

    fy = f0
    active = every.copy()
    while active.size:
        ya, ta, fa, ha = y[active], t[active], fy[active], h_abs[active]
        min_step = 10 * np.abs(np.nextafter(ta, np.inf) - ta)
        rejected = np.zeros(active.size, dtype=bool)
        todo = np.arange(active.size)
        # one accepted step per active episode; rejected ones shrink and retry
        while todo.size:
            rows = active[todo]
            h = np.maximum(ha[todo], min_step[todo])
            t_new = np.minimum(ta[todo] + h, end[rows])
            h = t_new - ta[todo]
            y_ = ya[todo]
            k0 = fa[todo]
            k1 = f(rows, ta[todo] + h / 2, y_ + (h / 2)[:, None] * k0)
            k2 = f(rows, ta[todo] + 0.75 * h, y_ + (0.75 * h)[:, None] * k1)
            y_new = y_ + h[:, None] * (2 / 9 * k0 + 1 / 3 * k1 + 4 / 9 * k2)
            k3 = f(rows, t_new, y_new)  # FSAL; clamps y_new in place
            scale = _ATOL + np.maximum(np.abs(y_), np.abs(y_new)) * _RTOL
            err = h[:, None] * (_E[0] * k0 + _E[1] * k1 + _E[2] * k2 + _E[3] * k3)
            norm = _rms(err / scale)
            ok = norm < 1
            with np.errstate(divide="ignore"):
                grow = np.where(norm == 0, _MAX_FACTOR, np.minimum(_MAX_FACTOR, _SAFETY * norm**_ERROR_EXPONENT))
                shrink = np.maximum(_MIN_FACTOR, _SAFETY * norm**_ERROR_EXPONENT)
            grow = np.where(rejected[todo], np.minimum(1.0, grow), grow)
            too_small = ~ok & (h <= min_step[todo])  # scipy gives up: the last accepted state stands
            acc = todo[ok]
            ya[acc], ta[acc], fa[acc] = y_new[ok], t_new[ok], k3[ok]
            ha[acc] = h[ok] * grow[ok]
            bad = todo[~ok]
            ha[bad] = h[~ok] * shrink[~ok]
            rejected[bad] = True
            ta[todo[too_small]] = end[active[todo[too_small]]]
            todo = todo[~ok & ~too_small]
        y[active], t[active], fy[active], h_abs[active] = ya, ta, fa, ha
        active = active[t[active] < end[active]]
    return y, calls


# -- the compiled path ------------------------------------------------------------------------
# The same right-hand side and RK23 controller, one episode at a time, compiled with numba: numpy
# spends ~57 µs of call overhead per right-hand-side call on arrays of 11 numbers, and an untreated
# day takes ~3,900 calls (perf/ghaffari.py). Without numba the numpy path above runs.

#: The parameter names of the compiled right-hand side, in PARAMETERS order (checked at import).
_SHORT = (
    "delta",
    "a1",
    "b1",
    "c1",
    "d1",
    "l",
    "s",
    "e1",
    "f1",
    "p1",
    "m1",
    "j1",
    "k1",
    "q1",
    "r11",
    "r12",
    "u1",
    "K_1T",
    "K_1L",
    "K_1N",
    "K_1C",
    "alpha",
    "beta",
    "mu",
    "a2",
    "b2",
    "c2",
    "d2",
    "e2",
    "f2",
    "p2",
    "m2",
    "j2",
    "k2",
    "q2",
    "r21",
    "r22",
    "u2",
    "K_2T",
    "K_2L",
    "K_2N",
    "K_2C",
    "gamma1",
    "gamma2",
    "gamma3",
    "epsilon",
    "alpha1",
    "alpha2",
    "W_1T",
    "W_1N",
    "W_1L",
    "W_1C",
    "W_2T",
    "W_2N",
    "W_2L",
)
assert _SHORT == tuple(PARAMETERS), "the compiled right-hand side unpacks the parameters in this order"


def _compiled_kernels():  # noqa: C901 - one compiled unit
    import numba

    @numba.njit(cache=True)
    def rhs(t, y, dose, infusion, P, tau, out):  # noqa: N803, E741 - P is the parameter row
        for i in range(11):
            if y[i] < 0.0:
                y[i] = 0.0  # in place, as DTRGym's right-hand side (§5)
        delta = P[0]
        a1 = P[1]
        b1 = P[2]
        c1 = P[3]
        d1 = P[4]
        l = P[5]  # noqa: E741 (the spec's name)
        s = P[6]
        e1 = P[7]
        f1 = P[8]
        p1 = P[9]
        m1 = P[10]
        j1 = P[11]
        k1 = P[12]
        q1 = P[13]
        r11 = P[14]
        r12 = P[15]
        u1 = P[16]
        K1T = P[17]
        K1L = P[18]
        K1N = P[19]
        K1C = P[20]
        alpha = P[21]
        beta = P[22]
        mu = P[23]
        a2 = P[24]
        b2 = P[25]
        c2 = P[26]
        d2 = P[27]
        e2 = P[28]
        f2 = P[29]
        p2 = P[30]
        m2 = P[31]
        j2 = P[32]
        k2 = P[33]
        q2 = P[34]
        r21 = P[35]
        r22 = P[36]
        u2 = P[37]
        K2T = P[38]
        K2L = P[39]
        K2N = P[40]
        K2C = P[41]  # noqa: F841 (unused by the right-hand side, named to keep the spec's order)
        g1 = P[42]
        g2 = P[43]
        g3 = P[44]
        eps = P[45]
        al1 = P[46]
        al2 = P[47]
        W1T = P[48]
        W1N = P[49]
        W1L = P[50]
        W1C = P[51]
        W2T = P[52]
        W2N = P[53]
        W2L = P[54]
        tp, np_, lp, c, ts, ns, ls, m, u, v, x = y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7], y[8], y[9], y[10]
        lpl, lsl = lp**l, ls**l
        kill_p = d1 * lpl / max(1.0, s * tp**l + lpl)
        kill_s = d2 * lsl / max(1.0, s * ts**l + lsl)
        out[0] = (
            a1 * tp * (1 - b1 * tp)
            - c1 * np_ * tp
            - kill_p * tp
            - al1 * tp
            - dose * tp
            + g1 * u
            - K1T * m * tp / (W1T + tp)
        )
        out[1] = e1 * c - p1 * np_ * tp - f1 * np_ - eps * dose * np_ + g2 * v - K1N * m * np_ / (W1N + np_)
        out[2] = (
            -m1 * lp
            + j1 * tp / (k1 + tp) * lp
            - q1 * lp * tp
            + r11 * np_ * tp
            + r12 * c * tp
            - u1 * np_ * lp**2
            - eps * dose * lp
            + g3 * x
            - K1L * m * lp / (W1L + lp)
        )
        out[3] = alpha - beta * c - K1C * m * c / (W1C + c)
        if t > tau:
            out[4] = (
                a2 * ts * (1 - b2 * ts) - c2 * ns * ts - kill_s * ts + al2 * tp * (t - tau) - K2T * m * ts / (W2T + ts)
            )
            out[5] = e2 * c - p2 * ns * ts - f2 * ns - K2N * m * ns / (W2N + ns)
            out[6] = (
                -m2 * ls
                + j2 * ts / (k2 + ts) * ls
                - q2 * ls * ts
                + r21 * ns * ts
                + r22 * c * ts
                - u2 * ns * ls**2
                - K2L * m * ls / (W2L + ls)
            )
        else:
            out[4] = 0.0
            out[5] = 0.0
            out[6] = 0.0
        out[7] = -mu * m + infusion
        out[8] = dose * tp - (g1 + delta) * u
        out[9] = dose * np_ - (g2 + delta) * v
        out[10] = dose * lp - (g3 + delta) * x

    @numba.njit(cache=True)
    def rms(z):
        acc = 0.0
        for i in range(z.shape[0]):
            acc += z[i] * z[i]
        return np.sqrt(acc / z.shape[0])

    e0, e1_, e2_, e3 = float(_E[0]), float(_E[1]), float(_E[2]), float(_E[3])

    @numba.njit(cache=True)
    def day(y, t, dose, infusion, P, tau):  # noqa: N803
        """One episode over [t, t + 1]; ``y`` is updated in place; returns the calls made."""
        n = y.shape[0]
        end = t + 1.0
        f0 = np.empty(n)
        k1 = np.empty(n)
        k2 = np.empty(n)
        k3 = np.empty(n)
        tmp = np.empty(n)
        y_new = np.empty(n)
        scale = np.empty(n)
        rhs(t, y, dose, infusion, P, tau, f0)
        calls = 1
        for i in range(n):
            scale[i] = _ATOL + abs(y[i]) * _RTOL
            tmp[i] = y[i] / scale[i]
        d0 = rms(tmp)
        for i in range(n):
            tmp[i] = f0[i] / scale[i]
        d1 = rms(tmp)
        h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        h0 = min(h0, end - t)
        for i in range(n):
            tmp[i] = y[i] + h0 * f0[i]
        rhs(t + h0, tmp, dose, infusion, P, tau, k1)
        calls += 1
        for i in range(n):
            tmp[i] = (k1[i] - f0[i]) / scale[i]
        d2 = rms(tmp) / h0
        big = max(d1, d2)
        h1 = max(1e-6, h0 * 1e-3) if big <= 1e-15 else (0.01 / big) ** (1.0 / 3.0)
        h_abs = min(100 * h0, h1, end - t)
        while t < end:
            min_step = 10 * abs(np.nextafter(t, np.inf) - t)
            rejected = False
            while True:
                h = max(h_abs, min_step)
                t_new = min(t + h, end)
                h = t_new - t
                for i in range(n):
                    tmp[i] = y[i] + (h / 2) * f0[i]
                rhs(t + h / 2, tmp, dose, infusion, P, tau, k1)
                for i in range(n):
                    tmp[i] = y[i] + (0.75 * h) * k1[i]
                rhs(t + 0.75 * h, tmp, dose, infusion, P, tau, k2)
                for i in range(n):
                    y_new[i] = y[i] + h * (2 / 9 * f0[i] + 1 / 3 * k1[i] + 4 / 9 * k2[i])
                rhs(t_new, y_new, dose, infusion, P, tau, k3)  # FSAL; clamps y_new in place
                calls += 3
                for i in range(n):
                    sc = _ATOL + max(abs(y[i]), abs(y_new[i])) * _RTOL
                    tmp[i] = h * (e0 * f0[i] + e1_ * k1[i] + e2_ * k2[i] + e3 * k3[i]) / sc
                norm = rms(tmp)
                if norm < 1.0:
                    if norm == 0.0:
                        grow = _MAX_FACTOR
                    else:
                        grow = min(_MAX_FACTOR, _SAFETY * norm**_ERROR_EXPONENT)
                    if rejected:
                        grow = min(1.0, grow)
                    h_abs = h * grow
                    t = t_new
                    for i in range(n):
                        y[i] = y_new[i]
                        f0[i] = k3[i]
                    break
                if h <= min_step:
                    return calls  # scipy gives up: the last accepted state stands
                h_abs = h * max(_MIN_FACTOR, _SAFETY * norm**_ERROR_EXPONENT)
                rejected = True
        return calls

    @numba.njit(cache=True)
    def days(y, t0, action, table, tau, calls):
        for b in range(y.shape[0]):
            calls[b] = day(y[b], t0[b], action[b, 0], action[b, 1], table[b], tau[b])

    return days


_KERNEL: list = []


def _kernel():
    """The compiled batch integrator, or None where numba is not installed (the numpy path runs)."""
    if not _KERNEL:
        try:
            _KERNEL.append(_compiled_kernels())
        except ImportError:
            _KERNEL.append(None)
    return _KERNEL[0]


class GhaffariBatch:
    """``n`` independent episodes of the cancer environment, stepped together.

    ``reset(seeds)`` starts one episode per seed and returns the first observations (n, 7);
    ``step(actions)`` advances the running episodes one day and returns (observations, base
    rewards, terminated, truncated). Episodes that have ended keep their last observation, get
    reward 0 and stay ended (``done``). Actions are executed as given: DTRGym does not clip them
    (§4; SB3's PPO clips its samples before they reach the environment, and the policy targets do
    the same), but a non-finite action is refused.
    """

    def __init__(self, noise: Noise | None = None, max_t: int = MAX_T) -> None:
        if not (isinstance(max_t, int) and max_t >= 1):
            raise ValueError(f"max_t must be a positive integer (days), got {max_t!r}")
        self.noise = noise or Noise()
        self.max_t = max_t
        self.rhs_calls = 0

    # -- episodes ------------------------------------------------------------------------------
    def reset(self, seeds) -> np.ndarray:
        seeds = [int(s) for s in np.atleast_1d(np.asarray(seeds))]
        if not seeds:
            raise ValueError("reset needs at least one seed")
        n = len(seeds)
        self.rngs: list = [None] * n
        self.params = {k: np.empty(n) for k in PARAMETERS}
        self.state = np.zeros((n, _N_STATE), dtype=np.float32)
        self.tau = np.empty(n)
        self.initial_tumour = np.empty(n)
        self.t = np.zeros(n, dtype=np.int64)
        self.done = np.zeros(n, dtype=bool)
        self.obs = np.zeros((n, 7), dtype=np.float32)
        self.first_obs = np.zeros((n, 7), dtype=np.float32)
        return self.restart(np.arange(n), seeds)

    def restart(self, rows, seeds) -> np.ndarray:
        """Start new episodes in ``rows`` with ``seeds`` (the other episodes run on); returns every
        current observation. What an auto-resetting vectorised environment needs."""
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        seeds = [int(s) for s in np.atleast_1d(np.asarray(seeds))]
        if len(seeds) != rows.size:
            raise ValueError(f"restart needs one seed per row, got {len(seeds)} seeds for {rows.size} rows")
        half_p, half_s = self.noise.pkpd * 0.5, self.noise.state * 0.5
        for i, seed in zip(rows, seeds):  # the environment's draw order (§6)
            rng = self.rngs[i] = np.random.RandomState(seed)
            for k, v in PARAMETERS.items():
                self.params[k][i] = rng.uniform(v * (1 - half_p), v * (1 + half_p))
            self.state[i] = 0.0
            for j, v in enumerate(INITIAL):
                self.state[i, j] = np.float32(max(0.0, rng.uniform(v * (1 - half_s), v * (1 + half_s))))
            self.tau[i] = rng.randint(0, 10) if self.noise.state > 0 else 5
        self.initial_tumour[rows] = np.maximum(np.e, self.state[rows, 0].astype(np.float64) + self.state[rows, 4])
        self.t[rows] = 0
        self.done[rows] = False
        self.obs[rows] = self._observe(self.state[rows], rows=rows, after_step=False)
        self.first_obs[rows] = self.obs[rows]
        return self.obs.copy()

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        a = np.asarray(actions, dtype=np.float64)
        n = self.state.shape[0]
        if a.shape != (n, 2):
            raise ValueError(f"actions must have shape ({n}, 2) (dose, infusion), got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError("actions contain NaN or inf")
        reward = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        run = np.flatnonzero(~self.done)
        if run.size == 0:
            return self.obs.copy(), reward, terminated, truncated
        before = self.state[run]
        p = {k: v[run] for k, v in self.params.items()}
        y, calls = integrate_day(before.astype(np.float64), self.t[run].astype(np.float64), a[run], p, self.tau[run])
        self.rhs_calls += int(calls.sum())
        after = y.astype(np.float32)
        pops = after[:, :7]
        with np.errstate(invalid="ignore"):
            inside = np.isfinite(pops).all(1) & (pops >= 0).all(1) & (pops <= STATE_HIGH).all(1)
        negative = ~inside
        positive = (pops[:, 0] < 1) & (pops[:, 4] < 1)
        negative &= ~positive
        last = self.t[run] + 1 == self.max_t
        positive &= ~last
        negative &= ~last
        obs = self._observe(after, rows=run)
        # DTRGym's reward is computed on the state before the step (§7.5)
        tumour = np.maximum(np.e, before[:, 0].astype(np.float64) + before[:, 4])
        r = 1.0 - np.log(tumour) / np.log(self.initial_tumour[run])
        r += TERMINAL_REWARD * positive - TERMINAL_REWARD * negative
        self.state[run] = after
        self.obs[run] = obs
        self.t[run] += 1
        reward[run] = r
        terminated[run] = positive | negative
        truncated[run] = last
        self.done[run] = terminated[run] | truncated[run]
        return self.obs.copy(), reward, terminated, truncated

    def _observe(self, state: np.ndarray, rows, after_step: bool = True) -> np.ndarray:
        """Noisy log-observations of ``state`` (k, 11), whose rows are episodes ``rows``. Each
        episode draws its 7 noise values, then, after a step, the missing-observation test's one
        draw, which the environment makes even at missing rate 0 (§6)."""
        z = state[:, :7].astype(np.float64)
        obs = np.empty((state.shape[0], 7), dtype=np.float32)
        for out_i, i in enumerate(rows):
            rng = self.rngs[i]
            noisy = z[out_i] * (1 + self.noise.obs * rng.uniform(-0.5, 0.5, size=7))
            if after_step:
                rng.uniform()
            obs[out_i] = np.clip(np.log(np.maximum(noisy, 1.0)).astype(np.float32), 0.0, OBS_HIGH)
        return obs


def vec_env(n_envs: int, lam: float, seed: int, noise: Noise | None = None, max_t: int = MAX_T):
    """A stable-baselines3 ``VecEnv`` of ``n_envs`` cancer episodes with the paper's shaped reward
    r + λ·:func:`nk_penalty` (§9), auto-resetting as SB3 expects (the finished episode's last
    observation in ``info["terminal_observation"]``, ``info["TimeLimit.truncated"]`` on day
    ``max_t``). Episode k of environment i is seeded ``seed + k·n_envs + i``: every episode is
    reproducible and no two share a seed."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import VecEnv

    if not (isinstance(n_envs, int) and n_envs >= 1):
        raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
    obs_space = gym.spaces.Box(0.0, OBS_HIGH, dtype=np.float32)
    act_space = gym.spaces.Box(ACTION_LOW, ACTION_HIGH, dtype=np.float32)

    class CancerVecEnv(VecEnv):
        render_mode = None  # nothing to render; SB3 asks for it

        def __init__(self) -> None:
            super().__init__(n_envs, obs_space, act_space)
            self.sim = GhaffariBatch(noise, max_t)
            self.episodes = np.zeros(n_envs, dtype=np.int64)
            self.lam = float(lam)
            self._actions = None

        def _episode_seeds(self, rows: np.ndarray) -> list[int]:
            return [int(seed) + int(self.episodes[i]) * n_envs + int(i) for i in rows]

        def reset(self):
            self.episodes[:] = 0
            return self.sim.reset(self._episode_seeds(np.arange(n_envs)))

        def step_async(self, actions) -> None:
            self._actions = np.asarray(actions, dtype=np.float64).reshape(n_envs, 2)

        def step_wait(self):
            obs, r, terminated, truncated = self.sim.step(self._actions)
            reward = (r + self.lam * nk_penalty(obs, self.sim.first_obs)).astype(np.float32)
            dones = terminated | truncated
            infos = [{} for _ in range(n_envs)]
            ended = np.flatnonzero(dones)
            for i in ended:
                infos[i] = {"terminal_observation": obs[i].copy(), "TimeLimit.truncated": bool(truncated[i])}
            if ended.size:
                self.episodes[ended] += 1
                obs = self.sim.restart(ended, self._episode_seeds(ended))
            return obs, reward, dones, infos

        def close(self) -> None:
            pass

        def get_attr(self, attr_name, indices=None):
            return [getattr(self, attr_name)] * len(self._get_indices(indices))

        def set_attr(self, attr_name, value, indices=None) -> None:
            setattr(self, attr_name, value)

        def env_method(self, method_name, *args, indices=None, **kwargs):
            return [getattr(self, method_name)(*args, **kwargs) for _ in self._get_indices(indices)]

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False] * len(self._get_indices(indices))

    return CancerVecEnv()
