"""Shared test helpers: tiny learnable synthetic datasets and small run configs."""

import numpy as np
import pytest

from jaxmlp import config as C
from jaxmlp.epoch import Data


def tiny_data(n_train=200, n_val=40, n_test=40, dim=12, classes=4, seed=0) -> Data:
    """A learnable problem: labels are the argmax of a fixed random linear map of the inputs."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(dim, classes))
    n = n_train + n_val + n_test
    x = rng.uniform(size=(n, dim)).astype(np.float32)
    y = np.argmax((x - 0.5) @ w, axis=1).astype(np.int32)
    a, b = n_train, n_train + n_val
    return Data(x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:])


def tiny_run(name="tiny", *, hidden=(16, 8), epochs=4, batch_size=32, seed=0, lr=1e-2,
             optim="adam", hooks=None, dim=12, classes=4, **model) -> C.RunConfig:
    return C.RunConfig(
        name,
        model=C.ModelConfig(hidden=hidden, input_dim=dim, num_classes=classes, **model),
        optim=C.OptimConfig(optim, lr),
        train=C.TrainConfig("fashion_mnist", epochs=epochs, batch_size=batch_size, seed=seed),
        hooks=hooks or C.HooksConfig())


@pytest.fixture
def data():
    return tiny_data()
