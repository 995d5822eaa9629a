"""The Flax MLP: Keras parameter counts, initializers, BatchNorm defaults, L2, dropout."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp import config as C
from jaxmlp import models, records

COMBINED = C.ModelConfig(hidden=(256, 128, 64), batch_norm=True, dropout=(0.3, 0.3, 0.2),
                         l2=1e-4, kernel_init="he_normal", input_dim=3072)


def leaf_count(tree) -> int:
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


@pytest.mark.parametrize("cfg, total, trainable", [
    # Keras model.count_params() for these models (numbers from the issue/seed, not our code).
    (C.ModelConfig(hidden=(32, 32), input_dim=3072), 99_722, 99_722),
    (C.ModelConfig(hidden=(128, 128, 128), input_dim=3072), 427_658, 427_658),
    (COMBINED, 830_282, 829_386),
])
def test_parameter_counts_equal_keras_count_params(cfg, total, trainable):
    counts = records.count_params(cfg)
    assert (counts["total"], counts["trainable"]) == (total, trainable)
    assert counts["non_trainable"] == total - trainable
    # ...and equal the arrays the model really has.
    params, stats = models.build(cfg).init(jax.random.key(0))
    assert leaf_count(params) == trainable
    assert leaf_count(stats) == total - trainable


def test_gelu_is_kerass_exact_erf_form_not_the_tanh_approximation():
    # Keras 3: Dense(..., activation="gelu") is keras.activations.gelu(x, approximate=False).
    x = np.linspace(-4, 4, 81)
    exact = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x]
    got = np.asarray(models._ACTIVATIONS["gelu"](jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(got, exact, rtol=2e-6, atol=2e-7)
    tanh_form = np.asarray(jax.nn.gelu(jnp.asarray(x, jnp.float32), approximate=True))
    assert np.abs(tanh_form - exact).max() > 1e-4  # the two differ by more than rounding


def test_combined_model_has_896_batchnorm_moving_statistics():
    _, stats = models.build(COMBINED).init(jax.random.key(0))
    assert leaf_count(stats) == 896 == 2 * (256 + 128 + 64)


def test_he_normal_and_glorot_uniform_have_keras_scales():
    he = models.build(C.ModelConfig(hidden=(256,), input_dim=3072, kernel_init="he_normal"))
    k = np.asarray(he.init(jax.random.key(1))[0]["dense_0"]["kernel"])
    np.testing.assert_allclose(k.std(), np.sqrt(2 / 3072), rtol=0.02)
    assert np.abs(k).max() <= 2 * np.sqrt(2 / 3072) / 0.87962566103423978 + 1e-7  # truncated
    gl = models.build(C.ModelConfig(hidden=(256,), input_dim=3072))
    params = gl.init(jax.random.key(1))[0]
    limit = np.sqrt(6 / (3072 + 256))
    k = np.asarray(params["dense_0"]["kernel"])
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.99 * limit
    assert not np.any(np.asarray(params["dense_0"]["bias"]))  # Keras bias init: zeros


def test_batchnorm_uses_keras_momentum_and_epsilon():
    cfg = C.ModelConfig(hidden=(3,), batch_norm=True, input_dim=2, num_classes=2)
    fns = models.build(cfg)
    params, stats = fns.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (16, 2)) * 3 + 1
    _, new = fns.apply(params, stats, x, train=True)
    h = x @ params["dense_0"]["kernel"] + params["dense_0"]["bias"]
    # moving = 0.99 * moving + 0.01 * batch statistic (Keras momentum=0.99; variance starts at 1).
    np.testing.assert_allclose(new["norm_0"]["mean"], 0.01 * h.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new["norm_0"]["var"], 0.99 + 0.01 * h.var(0), rtol=1e-5)
    # Inference: (h - mean) / sqrt(var + 1e-3) * gamma + beta with the moving statistics.
    logits, _ = fns.apply(params, new, x, train=False)
    norm = (h - new["norm_0"]["mean"]) / np.sqrt(new["norm_0"]["var"] + 1e-3)
    expected = jax.nn.relu(norm) @ params["out"]["kernel"] + params["out"]["bias"]
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)


def test_l2_penalty_is_coef_times_sum_of_squared_kernels_per_layer_kind():
    params = {"dense_0": {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.full((3,), 100.0)},
              "out": {"kernel": jnp.ones((3, 1)), "bias": jnp.ones((1,))}}
    # Hidden kernels 6 * 2**2 = 24 at 1e-4; the output kernel 3 * 1**2 = 3 at its own coef.
    both = jnp.asarray([1e-4, 1e-4])
    assert float(models.l2_penalty(params, both)) == pytest.approx(1e-4 * (24 + 3))
    hidden_only = models.l2_coefs(C.ModelConfig(hidden=(3,), l2=1e-4))
    assert float(models.l2_penalty(params, hidden_only)) == pytest.approx(1e-4 * 24)
    out_only = models.l2_coefs(C.ModelConfig(hidden=(3,), output_l2=0.5))
    assert float(models.l2_penalty(params, out_only)) == pytest.approx(0.5 * 3)


def test_output_layer_has_keras_dense_defaults_unless_told():
    # Keras Dense(10, activation="softmax"): glorot_uniform, whatever the hidden layers use.
    # glorot_uniform on (256, 10): limit sqrt(6 / 266) = 0.150; he_normal: std sqrt(2/256)
    # = 0.088, truncated at 2 std, so |w| <= 0.177 and values beyond 0.150 occur.
    cfg = C.ModelConfig(hidden=(256,), input_dim=64, kernel_init="he_normal")
    params, _ = models.build(cfg).init(jax.random.key(0))
    out = np.asarray(params["out"]["kernel"])
    limit = math.sqrt(6 / (256 + 10))
    assert np.abs(out).max() <= limit
    assert np.std(out) == pytest.approx(limit / math.sqrt(3), rel=0.1)  # uniform's std
    told = dataclasses.replace(cfg, output_init="he_normal")
    out = np.asarray(models.build(told).init(jax.random.key(0))[0]["out"]["kernel"])
    assert np.abs(out).max() > limit
    assert np.std(out) == pytest.approx(math.sqrt(2 / 256), rel=0.1)
    with pytest.raises(C.ConfigError, match="output_init"):
        C.ModelConfig(output_init="zeros")


def test_dropout_zeroes_about_the_rate_and_keeps_the_mean():
    x = jnp.ones((200_000,))
    y = models.dropout(x, 0.3, jax.random.key(0))
    assert float(jnp.mean(y == 0)) == pytest.approx(0.3, abs=0.01)
    assert float(y.mean()) == pytest.approx(1.0, abs=0.01)
    np.testing.assert_array_equal(models.dropout(x, 0.0, jax.random.key(0)), x)


def test_masks_drawn_apart_are_the_ones_apply_draws_from_the_key():
    cfg = C.ModelConfig(hidden=(8, 6), dropout=(0.5, 0.25), input_dim=4, num_classes=3)
    fns = models.build(cfg)
    params, stats = fns.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (5, 4)) + 2
    rates, key = jnp.array([0.5, 0.25]), jax.random.key(7)
    masks = fns.masks(key, rates, 5)
    assert [m.shape for m in masks] == [(5, 8), (5, 6)] and masks[0].dtype == jnp.bool_
    assert 0 < int(masks[0].sum()) < 40  # some units kept, some dropped
    a, _ = fns.apply(params, stats, x, train=True, dropout_rates=rates, key=key)
    b, _ = fns.apply(params, stats, x, train=True, dropout_rates=rates, masks=masks)
    np.testing.assert_array_equal(a, b)
    other = fns.masks(jax.random.key(8), rates, 5)
    c, _ = fns.apply(params, stats, x, train=True, dropout_rates=rates, masks=other)
    assert not np.array_equal(a, c)


def test_eval_mode_ignores_dropout():
    cfg = C.ModelConfig(hidden=(8,), dropout=0.5, input_dim=4, num_classes=3)
    fns = models.build(cfg)
    params, stats = fns.init(jax.random.key(0))
    x = jnp.ones((5, 4))
    a, _ = fns.apply(params, stats, x, train=False)
    b, _ = fns.apply(params, stats, x, train=False, dropout_rates=jnp.array([0.5]),
                     key=jax.random.key(3))
    np.testing.assert_array_equal(a, b)


def keras_sparse_ce(probs, labels, eps):
    """keras/src/backend/jax/nn.py sparse_categorical_crossentropy(from_logits=False), in numpy
    float32 as Keras computes it (1 - 1e-7 rounds to 1 - 2**-23 there)."""
    probs = (probs / probs.sum(-1, keepdims=True)).astype(np.float32)
    probs = np.clip(probs, np.float32(eps), np.float32(1.0) - np.float32(eps))
    return -np.log(probs[np.arange(len(labels)), labels])


def test_output_clip_is_kerass_loss_on_softmax_probabilities():
    logits = jnp.asarray([[0.0, 1.0, 2.0], [40.0, 0.0, -40.0], [-30.0, 30.0, 0.0]], jnp.float32)
    labels = jnp.asarray([2, 2, 1])
    probs = np.asarray(jax.nn.softmax(logits))
    clipped = models.cross_entropy(logits, labels, clip=1e-7)
    np.testing.assert_allclose(clipped, keras_sparse_ce(probs, np.asarray(labels), 1e-7),
                               rtol=1e-5)
    assert float(clipped[1]) == pytest.approx(-math.log(1e-7), rel=1e-5)  # capped at 16.1
    exact = models.cross_entropy(logits, labels)
    assert float(exact[1]) == pytest.approx(80.0, rel=1e-5)  # the logits' exact value
    np.testing.assert_allclose(exact[0], clipped[0], rtol=1e-5)  # equal when nothing saturates


def test_output_clip_stops_the_gradient_of_a_saturated_example():
    labels = jnp.asarray([2])
    grad = jax.grad(lambda z: models.cross_entropy(z, labels, clip=1e-7).sum())
    assert not np.any(np.asarray(grad(jnp.asarray([[40.0, 0.0, -40.0]]))))
    assert np.any(np.asarray(grad(jnp.asarray([[1.0, 0.0, -1.0]]))))


def test_output_clip_is_checked_and_keys_its_own_program():
    with pytest.raises(C.ConfigError, match="output_clip"):
        C.ModelConfig(output_clip=0.5)
    from jaxmlp.group import group_key

    run = C.RunConfig("a", model=C.ModelConfig(input_dim=12))
    clipped = dataclasses.replace(run, model=dataclasses.replace(run.model, output_clip=1e-7))
    assert group_key(run) != group_key(clipped)


# Random123's known-answer vectors for Threefry-2x32 with 20 rounds (the ones JAX tests too).
THREEFRY_KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


@pytest.mark.parametrize("key,count,expected", THREEFRY_KAT)
def test_unrolled_threefry_matches_random123_answers(key, count, expected):
    k = [jnp.uint32(v) for v in key]
    x = [jnp.asarray([v], jnp.uint32) for v in count]
    out = jax.jit(models.threefry2x32)(*k, *x)
    assert [int(o[0]) for o in out] == list(expected)


@pytest.mark.parametrize("shape", [(64, 256), (8, 128), (3,), (7, 5, 3), (1, 1)])
def test_dropout_masks_are_jax_random_bernoulli_bit_for_bit(shape):
    """The fused masks are exactly jax.random.bernoulli's (so no committed result moves):
    several keys, rates (0 and 1 included), jitted and vmapped over members with own rates."""
    for seed in range(3):
        key = jax.random.fold_in(jax.random.key(seed), 7)
        for p in (0.7, 0.5, 0.123, 0.0, 1.0):
            want = jax.random.bernoulli(key, jnp.float32(p), shape)
            got = jax.jit(models.bernoulli, static_argnums=2)(key, jnp.float32(p), shape)
            np.testing.assert_array_equal(got, want)
    keys = jax.random.split(jax.random.key(1), 4)
    rates = jnp.asarray([0.7, 0.5, 0.9, 0.3], jnp.float32)
    want = jax.vmap(lambda k, p: jax.random.bernoulli(k, p, shape))(keys, rates)
    got = jax.jit(jax.vmap(lambda k, p: models.bernoulli(k, p, shape)))(keys, rates)
    np.testing.assert_array_equal(got, want)


def test_dropout_masks_fall_back_to_jax_under_another_prng():
    """Another key implementation, or Threefry's non-partitionable bits: jax's own masks."""
    key = jax.random.key(0, impl="rbg")
    np.testing.assert_array_equal(models.bernoulli(key, jnp.float32(0.6), (16, 8)),
                                  jax.random.bernoulli(key, jnp.float32(0.6), (16, 8)))
    key = jax.random.key(3)
    with jax.threefry_partitionable(False):
        want = jax.random.bernoulli(key, jnp.float32(0.6), (16, 8))
        got = models.bernoulli(key, jnp.float32(0.6), (16, 8))
    np.testing.assert_array_equal(got, want)
    # The same key under the default (partitionable) bits gives other masks: the switch matters.
    assert not np.array_equal(models.bernoulli(key, jnp.float32(0.6), (16, 8)), want)


# --- The first layer's product on the CPU (models.first_layer_dot) -----------------------------

def test_data_matmul_is_the_plain_product_with_the_plain_gradients():
    kx, kw = jax.random.split(jax.random.key(0))
    x, w = jax.random.normal(kx, (32, 300)), jax.random.normal(kw, (300, 16))

    def loss(dot):
        return lambda x, w: jnp.sum(jnp.sin(dot(x, w)))

    assert np.array_equal(models.data_matmul(x, w), x @ w)
    ours = jax.grad(loss(models.data_matmul), argnums=(0, 1))(x, w)
    plain = jax.grad(loss(jnp.matmul), argnums=(0, 1))(x, w)
    for a, b in zip(ours, plain):  # the data's gradient too, when asked for
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # Members stacked on a leading axis (a vmapped group).
    xs, ws = jnp.stack([x, 2 * x]), jnp.stack([w, -w])
    ours = jax.vmap(jax.grad(loss(models.data_matmul), argnums=1))(xs, ws)
    plain = jax.vmap(jax.grad(loss(jnp.matmul), argnums=1))(xs, ws)
    np.testing.assert_allclose(ours, plain, rtol=1e-5, atol=1e-5)
    # Anything but the 2-D product nnx.Linear asks for goes to lax.dot_general as is.
    x3 = jnp.ones((2, 3, 300))
    dims = (((2,), (0,)), ((), ()))
    assert np.array_equal(models.first_layer_dot(x3, w, dims), jax.lax.dot_general(x3, w, dims))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU's first-layer product")
def test_first_layer_dot_trains_ta8s_model_bit_for_bit_as_the_plain_product(monkeypatch):
    """Same products, same sums: the change is where x^T lies in memory, not the arithmetic."""
    from conftest import tiny_data

    from jaxmlp.group import build_group, init_group

    data = tiny_data(n_train=300, n_val=40, dim=3072, classes=10)
    run = C.RunConfig("combined", model=COMBINED, optim=C.OptimConfig("adam", 1e-3,
                                                                      keras_epsilon=True),
                      train=C.TrainConfig("cifar10", epochs=2, batch_size=128))

    def two_epochs():
        group = build_group([run], data)
        state = init_group(group)
        records = []
        for _ in range(2):
            state, record = group.step(state, data)
            records.append(record)
        hlo = group.step.lower(init_group(group), data).as_text()
        return jax.tree.map(np.asarray, (state.params, state.opt_state, records)), hlo

    ours, ours_hlo = two_epochs()
    monkeypatch.setattr(models, "first_layer_dot", jax.lax.dot_general)
    plain, plain_hlo = two_epochs()
    # Two programs (the barrier before x^T's product), one result.
    assert "optimization_barrier" in ours_hlo and "optimization_barrier" not in plain_hlo
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(plain)):
        assert np.array_equal(a, b)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU's first-layer product")
def test_first_layer_copies_x_transposed_only_for_wide_inputs():
    """Below models.LAID_OUT_MIN_FEATURES (Fashion-MNIST's 784) the copy costs more than it
    saves (python -m jaxmlp.bench.first_layer): the plain product there."""
    assert models.LAID_OUT_MIN_FEATURES == 1024
    for dim, laid_out in ((784, False), (1023, False), (1024, True), (3072, True)):
        cfg = C.ModelConfig(hidden=(8,), input_dim=dim)
        fns = models.build(cfg)
        params, stats = fns.init(jax.random.key(0))
        xs = jnp.ones((4, dim))

        def loss(p, fns=fns, stats=stats, xs=xs):
            return fns.apply(p, stats, xs, train=True)[0].sum()

        text = jax.jit(jax.grad(loss)).lower(params).as_text()
        assert ("optimization_barrier" in text) == laid_out, dim


def test_first_layer_bench_times_both_products_by_width():
    from jaxmlp.bench import first_layer

    r = first_layer.compare(16, batch=32, n=128, rounds=1, repeats=1)
    assert r["input_dim"] == 16 and r["used"] is False
    assert r["speedup"] == r["plain_s"] / r["laid_out_s"] > 0
    assert models.LAID_OUT_MIN_FEATURES == 1024  # restored after the forced build
