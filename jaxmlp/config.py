"""Run configuration: plain frozen dataclasses, validated when built."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

ACTIVATIONS = ("relu", "gelu", "tanh", "elu", "selu", "sigmoid", "swish")
KERNEL_INITS = (
    "glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform",
)
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
DATASETS = ("fashion_mnist", "cifar10", "mnist")
INPUT_DIMS = {"fashion_mnist": 784, "cifar10": 3072, "mnist": 784}  # flattened image sizes
SPLITS = ("tail", "shuffled")
# One vocabulary of metric names, as Keras logs them.
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
MODES = ("auto", "min", "max")
# How a LearningRateScheduler and ReduceLROnPlateau combine (jaxmlp.hooks):
#   "keras": as Keras 3 does, the scheduler sets the LR at every epoch start and so overwrites
#            the plateau's cuts;
#   "scale": ours, lr = max(schedule(epoch) * plateau scale, plateau min_lr).
LR_COMPOSITIONS = ("keras", "scale")


class ConfigError(ValueError):
    """A configuration value is out of range or unknown."""


def _fail(owner: str, name: str, value, allowed: str):
    raise ConfigError(f"{owner}.{name}={value!r} is invalid: allowed {allowed}")


def _check_choice(owner, name, value, choices):
    if value not in choices:
        _fail(owner, name, value, "one of " + ", ".join(repr(c) for c in choices))


def _check_range(owner, name, value, lo, hi, *, lo_open=False, hi_open=False):
    bad = not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value)
    if not bad:
        bad = (value <= lo if lo_open else value < lo) or (value >= hi if hi_open else value > hi)
    if bad:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        _fail(owner, name, value, f"a number in {left}{lo}, {hi}{right}")


def _plain(cfg) -> None:
    """NumPy scalars in `cfg`'s fields (also inside tuples) become Python ones, so that
    `epochs=np.int64(5)` or `hidden=(np.int64(256),)` validate as ints and the config stays
    JSON-ready (`to_dict`). Python values are kept as they are: a config's fingerprint is
    unchanged. (NumPy is not imported here: `jaxmlp.report` reads configs without it.)"""
    def plain(v):
        if type(v).__module__ == "numpy" and hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            return v.item()
        return type(v)(plain(x) for x in v) if isinstance(v, (tuple, list)) else v
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        new = plain(value)
        if new is not value:
            object.__setattr__(cfg, f.name, new)


def _check_int(owner, name, value, lo):
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        _fail(owner, name, value, f"an integer >= {lo}")


# Keras 3's arguments of a callback or optimizer that jaxmlp does not take, as
# `{name: (Keras's default, why not)}`: passing one at its Keras default changes nothing and is
# accepted, so that Keras code runs as written; `ANY` marks one accepted with any value (jaxmlp
# does that either way, the reason says why).
ANY = object()


def check_keras_only(owner: str, extra: dict, table: dict, allowed: list[str]) -> None:
    """One ConfigError for the first of `extra` (name: value) that is not accepted: a name not
    in `table` (naming the `allowed` ones), or a value other than Keras's default (saying why)."""
    for name, value in extra.items():
        if name not in table:
            raise ConfigError(f"{owner}: unknown argument {name}=; " + (
                "allowed " + ", ".join(allowed) if allowed else "it takes no arguments"))
        default, why = table[name]
        if default is ANY or _same(value, default):
            continue
        raise ConfigError(f"{owner}.{name}={value!r} is not supported: {why} (Keras's default "
                          f"{name}={default!r} is accepted)")


def _same(value, default) -> bool:
    if default is None or isinstance(default, bool):  # a NumPy bool too (NumPy not imported)
        return value is default or (type(value).__name__ == "bool_"
                                    and type(value).__module__ == "numpy"
                                    and bool(value) is default)
    return type(value) is type(default) and value == default


def monitor_sign(monitor: str, mode: str) -> float:
    """+1 when smaller is better, -1 when larger is better (Keras 'auto': *accuracy is max)."""
    if mode == "auto":
        mode = "max" if monitor.endswith("accuracy") else "min"
    return 1.0 if mode == "min" else -1.0


@dataclass(frozen=True)
class ModelConfig:
    """An MLP: Dense [-> BatchNorm] -> activation [-> Dropout] per hidden layer, then Dense."""

    hidden: tuple[int, ...] = (256, 128)
    activation: str = "relu"
    batch_norm: bool = False
    dropout: tuple[float, ...] | float = 0.0  # one rate per hidden layer, or one for all
    kernel_init: str = "glorot_uniform"
    l2: float = 0.0  # Keras kernel_regularizer=l2(c) on hidden kernels: adds c * sum(w**2)
    input_dim: int = 784
    num_classes: int = 10
    # The output Dense layer: a Keras `Dense(classes, activation="softmax")` has glorot_uniform
    # and no regularizer whatever the hidden layers use; these say otherwise when wanted.
    output_init: str = "glorot_uniform"
    output_l2: float = 0.0
    # Keras's loss on a softmax output (sparse_categorical_crossentropy, from_logits=False)
    # clips the probabilities to [eps, 1 - eps] with eps = 1e-7 before the log, so no example
    # costs more than -log(1e-7) = 16.1 and its gradient stops there. 0 (ours, the default): the
    # exact cross-entropy from the logits.
    output_clip: float = 0.0

    def __post_init__(self):
        _plain(self)
        o = "ModelConfig"
        if not isinstance(self.hidden, (tuple, list)):
            _fail(o, "hidden", self.hidden, "a non-empty tuple of layer widths, e.g. (256, 128)")
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if not self.hidden:
            _fail(o, "hidden", self.hidden, "a non-empty tuple of layer widths")
        for width in self.hidden:
            _check_int(o, "hidden", width, 1)
        rates = self.dropout
        if isinstance(rates, (int, float)):
            rates = (float(rates),) * len(self.hidden)
        rates = tuple(float(r) for r in rates)
        if len(rates) != len(self.hidden):
            _fail(o, "dropout", self.dropout, f"one rate or {len(self.hidden)} rates")
        for r in rates:
            _check_range(o, "dropout", r, 0.0, 1.0, hi_open=True)
        object.__setattr__(self, "dropout", rates)
        _check_choice(o, "activation", self.activation, ACTIVATIONS)
        _check_choice(o, "kernel_init", self.kernel_init, KERNEL_INITS)
        _check_range(o, "l2", self.l2, 0.0, math.inf, hi_open=True)
        _check_choice(o, "output_init", self.output_init, KERNEL_INITS)
        _check_range(o, "output_l2", self.output_l2, 0.0, math.inf, hi_open=True)
        _check_range(o, "output_clip", self.output_clip, 0.0, 0.5, hi_open=True)
        _check_int(o, "input_dim", self.input_dim, 1)
        _check_int(o, "num_classes", self.num_classes, 2)


CLIPS = ("clipnorm", "clipvalue", "global_clipnorm")


@dataclass(frozen=True)
class OptimConfig:
    """An optimizer with Keras's default hyperparameters (see jaxmlp.optim for differences)."""

    name: str = "adam"
    learning_rate: float | None = None  # None: Keras's default (0.01 for SGD, else 0.001)
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7  # Keras default for Adam/AdamW/RMSprop (optax uses 1e-8)
    weight_decay: float = 0.004  # AdamW only; Keras default
    momentum: float = 0.0  # SGD only
    nesterov: bool = False  # SGD only
    rho: float = 0.9  # RMSprop only
    # Adam/AdamW only. False: optax's epsilon, added to sqrt(v_hat). True: Keras 3's, added to
    # sqrt(v) before bias correction, which is larger in early steps (see jaxmlp.optim).
    keras_epsilon: bool = False
    # SGD only. False: optax's momentum trace in gradient units (t = g + m t, update -lr t).
    # True: Keras 3's velocity in parameter units (v = m v - lr g): the two differ only after
    # the learning rate changes (see jaxmlp.optim).
    keras_velocity: bool = False
    # Keras's gradient clipping, before the update (at most one; None: off): each weight's
    # gradient to this L2 norm, every gradient to this global L2 norm, or each element to
    # [-clipvalue, clipvalue] (see jaxmlp.optim.keras_clipped).
    clipnorm: float | None = None
    clipvalue: float | None = None
    global_clipnorm: float | None = None

    def __post_init__(self):
        _plain(self)
        o = "OptimConfig"
        clips = [n for n in CLIPS if getattr(self, n) is not None]
        for name in clips:
            _check_range(o, name, getattr(self, name), 0.0, math.inf, lo_open=True,
                         hi_open=True)
        if len(clips) > 1:
            _fail(o, clips[1], getattr(self, clips[1]),
                  f"one of {', '.join(CLIPS)} at most (Keras's rule); {clips[0]} is set")
        _check_choice(o, "name", self.name, OPTIMIZERS)
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", 0.01 if self.name == "sgd" else 1e-3)
        _check_range(o, "learning_rate", self.learning_rate, 0.0, math.inf, lo_open=True,
                     hi_open=True)
        for name in ("beta_1", "beta_2", "momentum", "rho"):
            _check_range(o, name, getattr(self, name), 0.0, 1.0, hi_open=True)
        _check_range(o, "epsilon", self.epsilon, 0.0, 1.0, lo_open=True)
        _check_range(o, "weight_decay", self.weight_decay, 0.0, math.inf, hi_open=True)
        if self.nesterov and self.momentum == 0.0:
            _fail(o, "nesterov", True, "only with momentum > 0")
        if self.keras_epsilon and self.name not in ("adam", "adamw"):
            _fail(o, "keras_epsilon", True, "only with name 'adam' or 'adamw'")
        if self.keras_velocity and self.name != "sgd":
            _fail(o, "keras_velocity", True, "only with name 'sgd'")


@dataclass(frozen=True)
class EarlyStopping:
    """Keras 3 EarlyStopping arguments (same names and defaults)."""

    monitor: str = "val_loss"
    min_delta: float = 0.0
    patience: int = 0
    mode: str = "auto"
    baseline: float | None = None
    restore_best_weights: bool = False
    start_from_epoch: int = 0

    def __post_init__(self):
        _plain(self)
        o = "EarlyStopping"
        _check_choice(o, "monitor", self.monitor, METRICS)
        _check_choice(o, "mode", self.mode, MODES)
        # Keras uses abs(min_delta): any sign is allowed, only a number is required.
        _check_range(o, "min_delta", self.min_delta, -math.inf, math.inf, lo_open=True,
                     hi_open=True)
        _check_int(o, "patience", self.patience, 0)
        _check_int(o, "start_from_epoch", self.start_from_epoch, 0)
        if self.baseline is not None:
            _check_range(o, "baseline", self.baseline, -math.inf, math.inf, lo_open=True,
                         hi_open=True)


@dataclass(frozen=True)
class ReduceLROnPlateau:
    """Keras 3 ReduceLROnPlateau arguments (same names and defaults; min_delta is absolute)."""

    monitor: str = "val_loss"
    factor: float = 0.1
    patience: int = 10
    mode: str = "auto"
    min_delta: float = 1e-4
    cooldown: int = 0
    min_lr: float = 0.0

    def __post_init__(self):
        _plain(self)
        o = "ReduceLROnPlateau"
        _check_choice(o, "monitor", self.monitor, METRICS)
        _check_choice(o, "mode", self.mode, MODES)
        _check_range(o, "factor", self.factor, 0.0, 1.0, lo_open=True, hi_open=True)
        _check_int(o, "patience", self.patience, 0)
        _check_int(o, "cooldown", self.cooldown, 0)
        # Keras uses abs(min_delta) (its MonitorCallback): any sign, only a number required.
        _check_range(o, "min_delta", self.min_delta, -math.inf, math.inf, lo_open=True,
                     hi_open=True)
        _check_range(o, "min_lr", self.min_lr, 0.0, math.inf, hi_open=True)


@dataclass(frozen=True)
class CosineSchedule:
    """The seeds' per-epoch cosine: lr(e) = min + (initial - min)/2 (1 + cos(pi e / period)).

    As the seeds wrote it the formula is periodic (it climbs back after `period` epochs);
    `hold=True` keeps min_lr after `period` instead.
    """

    initial_lr: float = 1e-3
    period: int = 10
    min_lr: float = 0.0
    hold: bool = False

    def __post_init__(self):
        _plain(self)
        o = "CosineSchedule"
        _check_range(o, "initial_lr", self.initial_lr, 0.0, math.inf, lo_open=True, hi_open=True)
        _check_int(o, "period", self.period, 1)
        _check_range(o, "min_lr", self.min_lr, 0.0, self.initial_lr)


@dataclass(frozen=True)
class ModelCheckpoint:
    """Keras ModelCheckpoint(save_best_only=True): keep the weights of the best epoch."""

    monitor: str = "val_loss"
    mode: str = "auto"

    def __post_init__(self):
        _plain(self)
        _check_choice("ModelCheckpoint", "monitor", self.monitor, METRICS)
        _check_choice("ModelCheckpoint", "mode", self.mode, MODES)


@dataclass(frozen=True)
class HooksConfig:
    """Which callbacks a run uses; None means off."""

    early_stopping: EarlyStopping | None = None
    reduce_lr: ReduceLROnPlateau | None = None
    schedule: CosineSchedule | None = None
    checkpoint: ModelCheckpoint | None = None
    terminate_on_nan: bool = True
    lr_composition: str = "keras"  # only matters with both a schedule and reduce_lr

    def __post_init__(self):
        _plain(self)
        o = "HooksConfig"
        for name, kind in (("early_stopping", EarlyStopping), ("reduce_lr", ReduceLROnPlateau),
                           ("schedule", CosineSchedule), ("checkpoint", ModelCheckpoint)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                _fail(o, name, value, f"None or a {kind.__name__}(...)")
        if not isinstance(self.terminate_on_nan, bool):
            _fail(o, "terminate_on_nan", self.terminate_on_nan, "True or False")
        _check_choice(o, "lr_composition", self.lr_composition, LR_COMPOSITIONS)


@dataclass(frozen=True)
class TrainConfig:
    """Data and loop settings. `dataset`, `validation_split` and `split` are what the loader
    reads (`jaxmlp.data.load` via the runner); None is the user's own arrays (`jaxmlp.fit`)."""

    dataset: str | None = "fashion_mnist"
    epochs: int = 10
    batch_size: int = 128
    validation_split: float = 0.1
    split: str = "tail"  # Keras validation_split semantics; "shuffled" is a seeded split
    seed: int = 0

    def __post_init__(self):
        _plain(self)
        o = "TrainConfig"
        if self.dataset is not None:
            _check_choice(o, "dataset", self.dataset, DATASETS)
        _check_int(o, "epochs", self.epochs, 1)
        _check_int(o, "batch_size", self.batch_size, 1)
        _check_range(o, "validation_split", self.validation_split, 0.0, 1.0, hi_open=True)
        _check_choice(o, "split", self.split, SPLITS)
        _check_int(o, "seed", self.seed, 0)


@dataclass(frozen=True)
class RunConfig:
    """One named run of an experiment."""

    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    part: int = 0
    label: str = ""
    description: str = ""

    def __post_init__(self):
        _plain(self)
        if not self.name or not all(c.isalnum() or c in "._-" for c in self.name):
            _fail("RunConfig", "name", self.name, "letters, digits, '.', '_' and '-'")


def to_dict(cfg) -> dict:
    """A JSON-ready dict of any config dataclass (tuples become lists)."""
    return dataclasses.asdict(cfg)


# Fields added after results were committed, with the default that trains what the code
# trained before they existed: (section of a RunConfig dict, field, default).
LATER_FIELDS = (("model", "output_clip", 0.0), ("optim", "keras_velocity", False),
                *(("optim", name, None) for name in CLIPS))


def without_later_defaults(run: dict) -> dict:
    """A RunConfig dict (`to_dict`) without the LATER_FIELDS that hold their default, so configs
    written before and after such a field existed compare (and fingerprint) equal."""
    out = dict(run)
    for section, key, default in LATER_FIELDS:
        if section in out and out[section].get(key, default) == default:
            out[section] = {k: v for k, v in out[section].items() if k != key}
    return out


_HOOK_KINDS = {"early_stopping": EarlyStopping, "reduce_lr": ReduceLROnPlateau,
               "schedule": CosineSchedule, "checkpoint": ModelCheckpoint}


def from_dict(d: dict) -> RunConfig:
    """The RunConfig that `to_dict` wrote (validated again on the way in)."""
    hooks = {k: (None if d["hooks"].get(k) is None else kind(**d["hooks"][k]))
             for k, kind in _HOOK_KINDS.items()}
    rest = {k: v for k, v in d["hooks"].items() if k not in _HOOK_KINDS}
    return RunConfig(
        name=d["name"], model=ModelConfig(**d["model"]), optim=OptimConfig(**d["optim"]),
        train=TrainConfig(**d["train"]), hooks=HooksConfig(**hooks, **rest),
        **{k: d[k] for k in ("part", "label", "description") if k in d})


def MLP(hidden=(256, 128), *, activation: str = "relu", dropout=0.0, batch_norm: bool = False,
        kernel_init: str = "glorot_uniform", l2: float = 0.0,
        output_clip: float = 0.0, **keras) -> ModelConfig:
    """The public model constructor (`jaxmlp.MLP`): a ModelConfig whose input and output sizes
    `jaxmlp.fit` takes from the data. Dense [-> BatchNorm] -> activation [-> Dropout] per hidden
    layer, then a Keras-default `Dense(classes, activation="softmax")`; `dropout` is one rate
    for every hidden layer or one per layer, `l2` is Keras's kernel_regularizer=l2(c) on them.
    The loss is the exact cross-entropy from the logits; `output_clip=1e-7` is Keras's instead
    (its softmax probabilities clipped to [1e-7, 1 - 1e-7] before the log).
    `kernel_initializer=` (Keras's Dense name, a string) is taken for `kernel_init`; any other
    name is one ConfigError listing the allowed ones."""
    if "kernel_initializer" in keras:
        if kernel_init != "glorot_uniform":
            raise ConfigError("MLP: kernel_init= and kernel_initializer= are the same setting; "
                              "allowed one of them")
        kernel_init = keras.pop("kernel_initializer")
    for name, value in keras.items():
        hint = {"kernel_regularizer": " (an L2 penalty on the hidden kernels is l2=c)",
                "units": " (the layers' widths are hidden=(256, 128, ...))"}.get(name, "")
        raise ConfigError(f"MLP: unknown argument {name}={value!r}{hint}; allowed hidden, "
                          "activation, dropout, batch_norm, kernel_init (or Keras's "
                          "kernel_initializer), l2, output_clip")
    return ModelConfig(hidden=hidden, activation=activation, dropout=dropout,
                       batch_norm=batch_norm, kernel_init=kernel_init, l2=l2,
                       output_clip=output_clip)
