"""Cheater: opens a socket to send what it has somewhere else (the test listens on PORT). Sealed, the
sandbox has no network."""

import socket

import torch

from hti_bench.surrogate import Surrogate

PORT = 0  # the test writes the port it listens on here


class PhoneHome(Surrogate):
    name = "phone-home"

    def fit(self, anchors, task=None, *, seed=0):
        self.anchors_ = anchors
        with socket.create_connection(("127.0.0.1", PORT), timeout=5) as conn:
            conn.sendall(b"anchors " + str(tuple(anchors.samples.shape)).encode())
        return self

    def sample(self, lam, conditions, n, seed):
        rows = self.anchors_.samples_at(conditions, seed)[self.anchors_.nearest(lam)]
        return rows[:, torch.randint(rows.shape[1], (n,), generator=self.generator(seed))]
