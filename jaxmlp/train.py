"""Deprecated: the engine moved to `jaxmlp.epoch`, `jaxmlp.group` and `jaxmlp.fit`.

Kept as a re-export while other modules migrate; `train.fit` is `jaxmlp.fit.fit_run`.
"""

from jaxmlp.epoch import (  # noqa: F401
    EVAL_CHUNK,
    Data,
    TrainState,
    device_data,
    evaluate,
    init_states,
    make_epoch,
)
from jaxmlp.fit import METRIC_KEYS, empty_history, fit_group  # noqa: F401
from jaxmlp.fit import fit_run as fit  # noqa: F401
from jaxmlp.group import SHARDS, Group, build_group, compile_group, group_key, init_group  # noqa: F401
