"""The ``tensor`` task: users' own [T, N, D+C] outputs, and what a malformed file says."""

import numpy as np
import pytest
import torch

from hti_bench.errors import ConfigError
from hti_bench.harness.registry import make_task
from hti_bench.harness.runner import run

LAMBDAS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])


def gaussian_tensor(n_per_class=40, classes=3, seed=0):
    """[T, N, 2 + 1]: class c at λ is N(c + λ, (0.2 + 0.3 λ)²) in 2-D — a W₂ geodesic in λ."""
    rng = np.random.default_rng(seed)
    label = np.repeat(np.arange(classes), n_per_class).astype(np.float32)
    z = rng.standard_normal((len(label), 2))
    data = np.stack([np.column_stack([(label + lam)[:, None] + (0.2 + 0.3 * lam) * z, label]) for lam in LAMBDAS])
    return data.astype(np.float32)


def test_an_npz_file_runs_end_to_end(tmp_path):
    path = tmp_path / "mine.npz"
    np.savez(path, data=gaussian_tensor(), lambdas=LAMBDAS, y_dim=2)
    task = make_task(f"tensor[path={path}]")
    assert task.anchors == ((0.0,), (0.5,), (1.0,)) and task.heldout == ((0.25,), (0.75,))
    assert task.categorical and task.output_dim == 2 and task.condition_dim == 1 and task.n_samples == 40
    # samples are the stored rows themselves
    stored = torch.as_tensor(gaussian_tensor()[1, :40, :2])
    got = task.sample(0.25, torch.tensor([[0.0]]), 40, seed=3)[0]
    assert torch.equal(got[got[:, 0].argsort()], stored[stored[:, 0].argsort()])
    summary = run(
        tasks=[f"tensor[path={path}]"],
        surrogates=["mccann", "nearest-anchor", "stn"],
        seeds=[0],
        results_dir=tmp_path / "res",
        progress=False,
    )
    board = summary.leaderboard.set_index("surrogate")
    # the family is a W₂ geodesic, so McCann beats nearest-anchor and the floor is a bootstrap's, > 0
    assert board.loc["mccann", "w2_mean"] < board.loc["nearest-anchor", "w2_mean"]
    assert board.loc["mccann", "floor_w2_mean"] > 0
    assert board.loc["stn", "status"].startswith("skipped: needs the task's architecture")


def test_a_bare_pt_tensor_with_lambdas_and_y_dim_in_the_spec(tmp_path):
    path = tmp_path / "mine.pt"
    torch.save(torch.as_tensor(gaussian_tensor()), path)
    task = make_task(f"tensor[path={path},lambdas=(0,1,2,3,4),y_dim=2,anchors=(0,4),heldout=(2,)]")
    assert task.anchors == ((0.0,), (4.0,)) and task.heldout == ((2.0,),)
    assert task.sample(2.0, task.eval_conditions(), 5, seed=0).shape == (3, 5, 2)


def write(tmp_path, name="bad.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "arrays, extra, message",
    [
        (dict(data=np.zeros((5, 10))), "", r"wrong rank: 'data' must be \[T, N, D\+C\], got shape \(5, 10\)"),
        (dict(data=gaussian_tensor(), lambdas=LAMBDAS[:4], y_dim=2), "", "4 λ values but 'data' has T = 5 slices"),
        (
            dict(data=np.where(np.arange(3)[None, None] == 0, np.nan, gaussian_tensor()), lambdas=LAMBDAS, y_dim=2),
            "",
            "'data' has 600 non-finite values",
        ),
        (dict(data=gaussian_tensor(), y_dim=2), "", "no λ values"),
        (dict(data=gaussian_tensor(), lambdas=LAMBDAS), "", "y_dim must be between 1 and 2"),
        (dict(data=gaussian_tensor(), lambdas=LAMBDAS[::-1], y_dim=2), "", "strictly increasing"),
        (
            dict(data=gaussian_tensor(), lambdas=LAMBDAS, y_dim=2),
            ",anchors=(0.0,0.6,1.0)",
            r"λ=0.6 is not one of the file's values",
        ),
        (dict(other=np.zeros(3)), "", "no 'data' array"),
        (
            dict(data=gaussian_tensor()[:3], lambdas=LAMBDAS[:3], y_dim=2),
            "",
            "are all anchors",
        ),  # like the paper's semicircles file
    ],
)
def test_malformed_files_are_refused_naming_the_file_and_the_problem(tmp_path, arrays, extra, message):
    path = write(tmp_path, **arrays)
    with pytest.raises(ConfigError, match=message) as err:
        make_task(f"tensor[path={path}{extra}]")
    assert "bad.npz" in str(err.value) or "0.6" in str(err.value)


def test_conditions_must_be_the_same_at_every_lambda(tmp_path):
    data = gaussian_tensor()
    data[3, 0, 2] = 2.0  # one x row changes at λ index 3
    path = write(tmp_path, data=data, lambdas=LAMBDAS, y_dim=2)
    with pytest.raises(ConfigError, match="bad.npz: the condition columns differ between λ values"):
        make_task(f"tensor[path={path}]")


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(ConfigError, match="needs path=FILE"):
        make_task("tensor")
    with pytest.raises(ConfigError, match="nope.npz: no such file"):
        make_task(f"tensor[path={tmp_path / 'nope.npz'}]")
    other = tmp_path / "data.csv"
    other.write_text("1,2\n")
    with pytest.raises(ConfigError, match="unknown file type '.csv'"):
        make_task(f"tensor[path={other}]")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="broken.npz: cannot be read"):
        make_task(f"tensor[path={broken}]")


def test_read_per_class_splits_the_papers_layout_and_names_a_bad_file(tmp_path):
    from hti_bench.tasks.tensor import read_per_class

    y = torch.randn(3, 10, 2)
    labels = torch.tensor([1.0, 0.0] * 5)
    np.savez(
        tmp_path / "ok.npz",
        data=torch.cat([y, labels.expand(3, 10)[..., None]], -1).numpy(),
        lambdas=np.array([0.0, 0.5, 1.0]),
        y_dim=2,
    )
    per_class, lams, classes = read_per_class(tmp_path / "ok.npz")
    assert per_class.shape == (3, 2, 5, 2) and lams == [0.0, 0.5, 1.0] and classes.tolist() == [[0.0], [1.0]]
    assert torch.equal(per_class[:, 1], y[:, labels == 1])
    np.savez(tmp_path / "bad.npz", data=y.numpy(), lambdas=np.array([0.0, 0.5, 1.0]), y_dim=2)
    with pytest.raises(ConfigError, match="bad.npz: expected data"):
        read_per_class(tmp_path / "bad.npz")


GRID = [(a, b) for a in (0.0, 0.5, 1.0) for b in (0.0, 0.5, 1.0)] + [(0.25, 0.25), (0.75, 0.5)]


def plane_tensor(n_per_class=60, classes=2, seed=0):
    """[T, N, 2 + 1] over points λ = (a, b): class c is N((c + 2a, b), (0.2 + 0.3 a)²) — each coordinate
    moves linearly, so the W₂ barycenter of the surrounding points is the truth up to sampling."""
    rng = np.random.default_rng(seed)
    label = np.repeat(np.arange(classes), n_per_class).astype(np.float32)
    z = rng.standard_normal((len(label), 2))
    data = [
        np.column_stack([np.column_stack([label + 2 * a, np.full_like(label, b)]) + (0.2 + 0.3 * a) * z, label])
        for a, b in GRID
    ]
    return np.stack(data).astype(np.float32)


def test_a_file_of_two_dimensional_lambda_runs_on_the_plane(tmp_path):
    path = tmp_path / "plane.npz"
    np.savez(path, data=plane_tensor(), lambdas=np.array(GRID), y_dim=2)
    task = make_task(f"tensor[path={path},axes='rate,weight']")
    assert task.d == 2 and task.hyperparameters.names == ("rate", "weight")
    # anchors: the hull's corners; held-out: every other point (edge midpoints and interior ones)
    assert set(task.anchors) == {(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)}
    assert len(task.heldout) == len(GRID) - 4 and (0.25, 0.25) in task.heldout
    stored = torch.as_tensor(plane_tensor()[GRID.index((0.75, 0.5)), :60, :2])
    got = task.sample((0.75, 0.5), torch.tensor([[0.0]]), 60, seed=1)[0]
    assert torch.equal(got[got[:, 0].argsort()], stored[stored[:, 0].argsort()])
    summary = run(
        tasks=[task.spec],
        surrogates=["barycenter", "nearest-anchor", "mccann"],
        seeds=[0],
        results_dir=tmp_path / "res",
        progress=False,
    )
    board = summary.leaderboard.set_index("surrogate")
    assert board.loc["barycenter", "w2_mean"] < 0.6 * board.loc["nearest-anchor", "w2_mean"]
    assert board.loc["mccann", "status"].startswith("skipped: one-dimensional")
    rows = summary.results
    assert set(rows["d"]) == {2} and {"lambda_rate", "lambda_weight"} <= set(rows.columns)


def test_two_dimensional_lambda_from_the_spec_and_its_errors(tmp_path):
    path = tmp_path / "plane.pt"
    torch.save({"data": torch.as_tensor(plane_tensor()), "y_dim": 2}, path)
    lams = "(" + ",".join(f"({a},{b})" for a, b in GRID) + ")"
    task = make_task(
        f"tensor[path={path},lambdas={lams},anchors=((0,0),(1,0),(0,1),(1,1),(0.5,0.5)),"
        "heldout=((0.25,0.25),(0.75,0.5)),clock='identity,identity']"
    )
    assert task.anchors[-1] == (0.5, 0.5) and task.heldout == ((0.25, 0.25), (0.75, 0.5))
    bad = [
        ("lambdas=(" + ",".join(f"({a},{b})" for a, b in GRID[:-1] + [(0.0, 0.0)]) + ")", "appears more than once"),
        ("lambdas=(" + ",".join(f"({i / 10},0.5)" for i in range(len(GRID))) + ")", "axis 2 of λ takes one value"),
        (f"lambdas={lams},axes='a,b,c'", "axes needs 2 names"),
        (f"lambdas={lams},anchors=((0,0),(1,0),(0,1),(1,1)),heldout=((0.3,0.3),)", r"λ=\(0.3, 0.3\) is not one"),
    ]
    for extra, message in bad:
        with pytest.raises(ConfigError, match=message):
            make_task(f"tensor[path={path},{extra}]")
