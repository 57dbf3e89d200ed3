import pytest

from hti_bench.errors import ConfigError
from hti_bench.specs import format_spec, parse_spec


@pytest.mark.parametrize(
    "text, name, params",
    [
        ("mccann", "mccann", {}),
        ("clot[metric=learned,potential=True]", "clot", {"metric": "learned", "potential": True}),
        ("moons-dropout[epochs=50, lr=0.001]", "moons-dropout", {"epochs": 50, "lr": 0.001}),
        ("t[anchors=(0.0, 0.5, 1.0),n_samples=10]", "t", {"anchors": (0.0, 0.5, 1.0), "n_samples": 10}),
        ("s[x=None,y='a,b']", "s", {"x": None, "y": "a,b"}),
    ],
)
def test_parse_and_round_trip(text, name, params):
    assert parse_spec(text) == (name, params)
    assert parse_spec(format_spec(name, params)) == (name, params)


def test_format_sorts_keys():
    assert format_spec("a", {"z": 1, "b": "x"}) == "a[b=x,z=1]"


@pytest.mark.parametrize("bad", ["", "a[b]", "a[1x=2]", "a[b=1,b=2]", "a b", "a[b=1"])
def test_malformed_specs_raise(bad):
    with pytest.raises(ConfigError):
        parse_spec(bad)
