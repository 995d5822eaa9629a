"""The Flax NNX multilayer perceptron, and pure functions over its split state."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxmlp.config import ModelConfig

_ACTIVATIONS = {
    "relu": jax.nn.relu,
    # Keras 3's activation "gelu" is keras.activations.gelu(x, approximate=False), the exact
    # x * Phi(x) with erf; jax.nn.gelu (and keras.ops.gelu) default to the tanh approximation.
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "sigmoid": jax.nn.sigmoid,
    "swish": jax.nn.swish,
}

# Keras initializer names -> JAX initializers. jax's truncated-normal variance scaling uses the
# same 0.8796 correction as Keras, so he_normal / glorot_normal / lecun_normal match.
_KERNEL_INITS = {
    "glorot_uniform": nnx.initializers.glorot_uniform(),
    "glorot_normal": nnx.initializers.variance_scaling(1.0, "fan_avg", "truncated_normal"),
    "he_normal": nnx.initializers.variance_scaling(2.0, "fan_in", "truncated_normal"),
    "he_uniform": nnx.initializers.variance_scaling(2.0, "fan_in", "uniform"),
    "lecun_normal": nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
    "lecun_uniform": nnx.initializers.variance_scaling(1.0, "fan_in", "uniform"),
}


def dropout(x, rate, key):
    """Inverted dropout with a traced rate (so vmapped members may differ); rate 0 is identity."""
    return apply_mask(x, dropout_mask(key, rate, x.shape), rate)


def dropout_mask(key, rate, shape):
    """The units dropout keeps (True), drawn as `dropout(x, rate, key)` draws them."""
    return bernoulli(key, 1.0 - rate, shape)


def apply_mask(x, mask, rate):
    """Inverted dropout with a mask from `dropout_mask`: kept units scaled by 1 / (1 - rate)."""
    keep = 1.0 - rate
    return jnp.where(mask, x / keep, 0.0)


# --- Dropout masks: jax.random.bernoulli's bits, computed without its CPU loop ---------------
# On the CPU, JAX lowers the Threefry-2x32 hash as a rolled 5-iteration while loop (to keep
# compile times short), so every dropout layer of every train step runs a loop of small unfused
# kernels: about a tenth of a CPU epoch of TA8's combined model (three dropout layers). The same
# hash written with jnp ops fuses into one elementwise kernel. `bernoulli` computes exactly the
# bits jax.random.bernoulli does (partitionable Threefry, JAX's default since 0.5) and falls back
# to it under any other PRNG configuration; tests/test_models.py checks equality bit for bit.

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotl(x, r):
    return (x << jnp.uint32(r)) | (x >> jnp.uint32(32 - r))


def threefry2x32(k1, k2, x1, x2):
    """The Threefry-2x32 hash (20 rounds), unrolled: JAX's `threefry2x32_p`, in jnp ops."""
    ks = (k1, k2, k1 ^ k2 ^ jnp.uint32(0x1BD11BDA))
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = _rotl(x2, r) ^ x1
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x1, x2


def _fast_bits_apply(key) -> bool:
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    impl = str(jax.random.key_impl(key)) if typed else jax.config.jax_default_prng_impl
    return jax.config.jax_threefry_partitionable and impl == "threefry2x32"


def bernoulli(key, p, shape):
    """`jax.random.bernoulli(key, p, shape)` for a float32 `p`, the same bits, fused."""
    size = math.prod(shape)
    if (not _fast_bits_apply(key) or size >= 2**32
            or jnp.dtype(jnp.result_type(p)) != jnp.float32):
        return jax.random.bernoulli(key, p, shape)
    k = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    counts = jax.lax.iota(jnp.uint32, size).reshape(shape)  # the low words; the high ones are 0
    b1, b2 = threefry2x32(k[0], k[1], jnp.zeros_like(counts), counts)
    bits = b1 ^ b2
    # jax.random.uniform's float: 23 random mantissa bits under the exponent of 1.0, minus 1.
    floats = jax.lax.bitcast_convert_type((bits >> jnp.uint32(9)) | jnp.uint32(0x3F800000),
                                          jnp.float32) - jnp.float32(1.0)
    return jnp.maximum(jnp.float32(0.0), floats) < p


# --- The first layer's kernel gradient on the CPU --------------------------------------------
# Autodiff forms the first Dense layer's kernel gradient as x^T g, reading the batch x (batch x
# 3072 on CIFAR-10) transposed. XLA's CPU dot runs a product with its left operand read
# transposed well below the rate of the same product on a row-major x^T, and at TA8's shapes
# this one product is half the epoch's FLOPs. So on the CPU the first layer's product is
# `data_matmul`, whose backward lays x^T out in memory first (the optimization barrier keeps XLA
# from folding the transpose back into the product). The same products: TA8's combined model
# trains bit for bit as before (tests/test_models.py), and so do all its runs but one; with a
# narrow first layer (baseline, 3072 to 32 units) the CPU's dot rounds differently from the
# second epoch on (its results were retrained with this code). The copy pays for itself only on wide
# inputs: `python -m jaxmlp.bench.first_layer` times an epoch both ways by input width (slower
# at Fashion-MNIST's 784 features, faster from 1024 on), hence LAID_OUT_MIN_FEATURES;
# `python -m jaxmlp.bench.epoch_floor` records the pair for TA8's model.
# Tried and dropped: the epoch gathering x^T straight from the training set (a gather whose
# offset dimension comes first) instead of transposing the gathered x. Unguarded, XLA rewrites
# it into a gather plus a transpose that the product reads transposed (the slow case above);
# behind an optimization barrier it becomes one loop fusion that reads a column of the batch
# at a time, 0.41 s per TA8 epoch at batch 128 where gather + transpose take 0.04 + 0.06 s
# (`python -m jaxmlp.bench.epoch_profile` on a scratch build, 2026-11-28; the numbers were bit
# for bit the same, the time was not).

LAID_OUT_MIN_FEATURES = 1024


def first_layer_dot_for(input_dim: int):
    """The first Dense layer's `dot_general`: `first_layer_dot` on the CPU for inputs of at
    least LAID_OUT_MIN_FEATURES features, lax.dot_general otherwise."""
    if jax.default_backend() == "cpu" and input_dim >= LAID_OUT_MIN_FEATURES:
        return first_layer_dot
    return jax.lax.dot_general


@jax.custom_vjp
def data_matmul(x, w):
    """`x @ w` (2-D), whose kernel gradient reads a row-major copy of x^T (see above)."""
    return x @ w


def _data_matmul_fwd(x, w):
    return x @ w, (x, w)


def _data_matmul_bwd(res, g):
    x, w = res
    # g @ w.T: the gradient with respect to x. When x is data nothing uses it and XLA drops it.
    return g @ w.T, jax.lax.optimization_barrier(x.T) @ g


data_matmul.defvjp(_data_matmul_fwd, _data_matmul_bwd)


def first_layer_dot(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None,
                    out_sharding=None):
    """`jax.lax.dot_general` for the first Dense layer: `data_matmul` for the plain 2-D product
    nnx.Linear asks for, lax.dot_general for anything else."""
    if (lhs.ndim == 2 and dimension_numbers == (((1,), (0,)), ((), ())) and precision is None
            and preferred_element_type is None and out_sharding is None):
        return data_matmul(lhs, rhs)
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type,
                               out_sharding=out_sharding)


class MLP(nnx.Module):
    """Dense [-> BatchNorm] -> activation [-> Dropout] per hidden layer, then Dense logits.

    The layer order and BatchNorm defaults (momentum 0.99, epsilon 1e-3) are Keras's.
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        init = _KERNEL_INITS[cfg.kernel_init]
        widths = (cfg.input_dim, *cfg.hidden)
        first_dot = first_layer_dot_for(cfg.input_dim)
        # Named attributes (dense_0, norm_0, ...) give string keys, which checkpoints keep as is.
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            setattr(self, f"dense_{i}", nnx.Linear(
                a, b, kernel_init=init, rngs=rngs,
                dot_general=first_dot if i == 0 else jax.lax.dot_general))
            if cfg.batch_norm:
                setattr(self, f"norm_{i}", nnx.BatchNorm(
                    b, momentum=0.99, epsilon=1e-3, use_fast_variance=False, rngs=rngs))
        self.out = nnx.Linear(widths[-1], cfg.num_classes,
                              kernel_init=_KERNEL_INITS[cfg.output_init], rngs=rngs)
        self.depth = len(cfg.hidden)
        self.batch_norm = cfg.batch_norm
        self.activation = cfg.activation

    def __call__(self, x, *, train: bool, dropout_rates=None, key=None, masks=None):
        act = _ACTIVATIONS[self.activation]
        for i in range(self.depth):
            x = getattr(self, f"dense_{i}")(x)
            if self.batch_norm:
                x = getattr(self, f"norm_{i}")(x, use_running_average=not train)
            x = act(x)
            if train and dropout_rates is not None and dropout_rates[i] is not None:
                if masks is not None:
                    x = apply_mask(x, masks[i], dropout_rates[i])
                else:
                    x = dropout(x, dropout_rates[i], jax.random.fold_in(key, i))
        return self.out(x)


class Uses(NamedTuple):
    """The optional parts a compiled step computes: dropout per hidden layer, the L2 term.

    A group's program computes a part if one of its members uses it (`uses_of`), as a Keras
    model without a Dropout layer draws no mask: a dropout rate of 0 keeps every unit and
    scales by 1 / (1 - 0), an L2 coefficient of 0 adds 0 x sum(w^2), so leaving out what no
    member uses changes nothing beyond float32 rounding (XLA fuses the two programs
    differently), only the work. Where some member uses a part, every member computes it with
    its own rate or coefficient, 0 included (members share one program); `group.group_key`
    says which runs share a program on each backend."""

    dropout: tuple[bool, ...]  # per hidden layer: some member's rate there is above 0
    l2: bool  # some member's `l2` or `output_l2` is above 0


def uses_of(configs) -> Uses:
    """What the models `configs` (one group's; equal depths) need their program to compute."""
    configs = list(configs)
    depths = {len(c.hidden) for c in configs}
    if len(depths) != 1:
        raise ValueError(f"models of depths {sorted(depths)} cannot share one program")
    return Uses(tuple(any(c.dropout[i] > 0 for c in configs) for i in range(depths.pop())),
                any(c.l2 > 0 or c.output_l2 > 0 for c in configs))


class ModelFns(NamedTuple):
    """Pure functions over the model's split state (params, batch_stats as plain dicts)."""

    init: object  # key -> (params, batch_stats)
    apply: object  # (params, batch_stats, x, train, dropout_rates, key | masks) -> (logits, stats)
    loss: object  # (logits, labels) -> per-example cross-entropy (`cross_entropy`)
    masks: object  # (key, dropout_rates, batch) -> the hidden layers' dropout masks (a tuple)
    regularized: object  # (loss, params, l2 coefs) -> the loss with the L2 term (`uses.l2`)
    uses: Uses  # what apply, masks and regularized compute


def build(cfg: ModelConfig, uses: Uses | None = None) -> ModelFns:
    """Split the NNX module once; training then runs plain jit/scan over pure dicts.

    `uses` (default: what `cfg` itself uses, `uses_of([cfg])`): the dropout layers and L2 term
    the functions compute; a group passes what any of its members uses."""
    uses = uses_of([cfg]) if uses is None else uses
    if len(uses.dropout) != len(cfg.hidden):
        raise ValueError(f"uses {uses}: one dropout flag per hidden layer ({len(cfg.hidden)})")
    abstract = nnx.eval_shape(lambda: MLP(cfg, rngs=nnx.Rngs(0)))
    graphdef, abs_params, abs_stats = nnx.split(abstract, nnx.Param, nnx.BatchStat)

    def init(key):
        model = MLP(cfg, rngs=nnx.Rngs(params=key))
        _, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(stats)

    def apply(params, batch_stats, x, *, train, dropout_rates=None, key=None, masks=None):
        """`masks` (from `masks`, below) replaces `key`: the same units dropped, drawn earlier.
        Layers whose dropout no member uses (`uses.dropout`) are left as they are."""
        if dropout_rates is not None:
            dropout_rates = tuple(dropout_rates[i] if on else None
                                  for i, on in enumerate(uses.dropout))
        p, s = jax.tree.map(lambda a: a, abs_params), jax.tree.map(lambda a: a, abs_stats)
        nnx.replace_by_pure_dict(p, params)
        nnx.replace_by_pure_dict(s, batch_stats)
        model = nnx.merge(graphdef, p, s)
        logits = model(x, train=train, dropout_rates=dropout_rates, key=key, masks=masks)
        return logits, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))

    def masks(key, dropout_rates, batch: int):
        """The masks `apply(..., train=True, dropout_rates, key)` draws for a batch of `batch`
        (None for a layer without dropout)."""
        return tuple(dropout_mask(jax.random.fold_in(key, i), dropout_rates[i], (batch, width))
                     if on else None
                     for i, (width, on) in enumerate(zip(cfg.hidden, uses.dropout)))

    def regularized(loss, params, coefs):
        return loss + l2_penalty(params, coefs) if uses.l2 else loss

    return ModelFns(init, apply, functools.partial(cross_entropy, clip=cfg.output_clip), masks,
                    regularized, uses)


def cross_entropy(logits, labels, *, clip: float = 0.0):
    """Per-example cross-entropy of integer labels. clip=0: exact, from the logits (optax).
    clip>0: Keras 3's sparse_categorical_crossentropy on softmax probabilities
    (keras/src/backend/jax/nn.py): the probabilities are clipped to [clip, 1 - clip] before
    the log, which also stops the gradient of an example beyond the clip."""
    if not clip:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    probs = jax.nn.softmax(logits, axis=-1)
    probs = jnp.clip(probs / jnp.sum(probs, -1, keepdims=True), clip, 1.0 - clip)
    return -jnp.take_along_axis(jnp.log(probs), labels[..., None], axis=-1)[..., 0]


def l2_coefs(cfg: ModelConfig):
    """The (hidden, output) L2 coefficients that `l2_penalty` takes, as one float32 array."""
    return jnp.asarray([cfg.l2, cfg.output_l2], jnp.float32)


def l2_penalty(params, coefs):
    """Keras kernel_regularizer=l2(c) per Dense kernel: c * sum(w ** 2), with c = coefs[0] for
    the hidden layers and coefs[1] for the output layer (`l2_coefs`)."""
    total = 0.0
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if getattr(path[-1], "key", None) == "kernel":
            coef = coefs[1] if getattr(path[0], "key", None) == "out" else coefs[0]
            total = total + coef * jnp.sum(jnp.square(leaf))
    return total
