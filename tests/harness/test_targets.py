"""The target cache: content-addressed, atomic, checked; corrupt entries are retrained, never used."""

import json

import pytest
import torch

from hti_bench.harness.targets import TargetCache


def state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_second_request_loads_from_cache(tiny_moons, tmp_path):
    cache = TargetCache(tmp_path)
    first = cache.get_or_train(tiny_moons, 0.5, 0)
    again = TargetCache(tmp_path).get_or_train(tiny_moons, 0.5, 0)
    for k, v in state(first).items():
        assert torch.equal(v, state(again)[k])
    assert cache.trained == 1
    payload, meta = cache.paths(tiny_moons, 0.5, 0)
    info = json.loads(meta.read_text())
    assert info["lam"] == 0.5 and info["task"] == "moons-dropout" and len(info["sha256"]) == 64


def test_key_depends_on_training_options_not_on_sample_counts(tiny_moons, tmp_path):
    from hti_bench.tasks.moons_dropout import MoonsDropout

    cache = TargetCache(tmp_path)
    base = cache.paths(tiny_moons, 0.5, 0)[0]
    more_samples = MoonsDropout(**{**tiny_moons.config.__dict__, "n_samples": 99})
    more_epochs = MoonsDropout(**{**tiny_moons.config.__dict__, "epochs": 3})
    assert cache.paths(more_samples, 0.5, 0)[0] == base
    assert cache.paths(more_epochs, 0.5, 0)[0] != base
    assert cache.paths(tiny_moons, 0.6, 0)[0] != base
    assert cache.paths(tiny_moons, 0.5, 1)[0] != base


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "drop-meta"])
def test_corrupt_entry_is_detected_and_retrained(tiny_moons, tmp_path, damage):
    cache = TargetCache(tmp_path)
    good = state(cache.get_or_train(tiny_moons, 0.5, 0))
    payload, meta = cache.paths(tiny_moons, 0.5, 0)
    data = payload.read_bytes()
    if damage == "truncate":
        payload.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        payload.write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))
    elif damage == "garbage":
        payload.write_bytes(b"not a checkpoint")
    else:
        meta.unlink()
    fresh = TargetCache(tmp_path)
    with pytest.warns(UserWarning, match="Discarding corrupt target cache entry"):
        net = fresh.get_or_train(tiny_moons, 0.5, 0)
    assert fresh.rejected == 1 and fresh.trained == 1
    for k, v in state(net).items():  # retraining is deterministic: the same weights come back
        assert torch.allclose(v, good[k])
    assert TargetCache(tmp_path).load(tiny_moons, 0.5, 0) is not None  # and the entry is whole again


def test_no_temporary_files_are_left_behind(tiny_moons, tmp_path):
    TargetCache(tmp_path).get_or_train(tiny_moons, 0.0, 0)
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_concurrent_requests_train_an_entry_once(tiny_moons, tmp_path):
    """Sweep workers share the cache: whoever holds the entry's lock trains, the others load."""
    import threading

    caches = [TargetCache(tmp_path) for _ in range(3)]
    nets = [None] * 3
    barrier = threading.Barrier(3)

    def request(i):
        barrier.wait()
        nets[i] = caches[i].get_or_train(tiny_moons, 0.5, 0)

    threads = [threading.Thread(target=request, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sum(c.trained for c in caches) == 1 and sum(c.hits for c in caches) == 2
    for net in nets[1:]:
        for k, v in state(nets[0]).items():
            assert torch.equal(v, state(net)[k])
