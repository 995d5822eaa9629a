"""Deprecated: the engine moved to `jaxmlp.epoch`, `jaxmlp.group` and `jaxmlp.loop`.

Kept as a re-export while other modules migrate; `train.fit` is `jaxmlp.loop.fit_run`.
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
from jaxmlp.group import SHARDS, Group, build_group, compile_group, group_key, init_group  # noqa: F401
from jaxmlp.loop import METRIC_KEYS, empty_history, fit_group  # noqa: F401
from jaxmlp.loop import fit_run as fit  # noqa: F401
