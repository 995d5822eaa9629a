"""Benchmarks and Keras parity, built on the experiment definitions (jaxmlp/experiments/).

    python -m jaxmlp.bench.epoch_floor    epoch time against this machine's matmul floor (--keras)
    python -m jaxmlp.bench.epoch_profile  where an epoch's time goes, XLA op by op, by category
    python -m jaxmlp.bench.sweep          vmapped groups vs one by one vs Keras 3 fit; sweep times
    python -m jaxmlp.bench.keras_parity   every P8D/TA8 run by Keras 3 fit, one record a seed
    python -m jaxmlp.bench.parity_table   ours vs Keras per run, from committed records (no JAX)
"""
