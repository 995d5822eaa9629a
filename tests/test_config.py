"""Config dataclasses refuse bad values with one message naming the field and what is allowed."""

import pytest

from jaxmlp import config as C


@pytest.mark.parametrize("make, field, allowed", [
    (lambda: C.ModelConfig(dropout=1.0), "ModelConfig.dropout", "[0.0, 1.0)"),
    (lambda: C.ModelConfig(dropout=-0.1), "ModelConfig.dropout", "[0.0, 1.0)"),
    (lambda: C.ModelConfig(hidden=(64, 32), dropout=(0.1, 0.2, 0.3)), "ModelConfig.dropout",
     "one rate or 2 rates"),
    (lambda: C.ModelConfig(activation="relu6"), "ModelConfig.activation", "'gelu'"),
    (lambda: C.ModelConfig(kernel_init="orthogonal"), "ModelConfig.kernel_init", "'he_normal'"),
    (lambda: C.ModelConfig(hidden=()), "ModelConfig.hidden", "non-empty"),
    (lambda: C.ModelConfig(l2=-1e-4), "ModelConfig.l2", "[0.0, inf)"),
    (lambda: C.OptimConfig(learning_rate=0.0), "OptimConfig.learning_rate", "(0.0, inf)"),
    (lambda: C.OptimConfig(learning_rate=-1e-3), "OptimConfig.learning_rate", "(0.0, inf)"),
    (lambda: C.OptimConfig(name="adagrad"), "OptimConfig.name", "'rmsprop'"),
    (lambda: C.OptimConfig("sgd", nesterov=True), "OptimConfig.nesterov", "momentum > 0"),
    (lambda: C.TrainConfig(batch_size=0), "TrainConfig.batch_size", "integer >= 1"),
    (lambda: C.TrainConfig(dataset="imagenet"), "TrainConfig.dataset", "'cifar10'"),
    (lambda: C.TrainConfig(validation_split=1.0), "TrainConfig.validation_split", "[0.0, 1.0)"),
    (lambda: C.TrainConfig(epochs=0), "TrainConfig.epochs", "integer >= 1"),
    (lambda: C.EarlyStopping(patience=-1), "EarlyStopping.patience", "integer >= 0"),
    (lambda: C.EarlyStopping(monitor="val_acc"), "EarlyStopping.monitor", "'val_accuracy'"),
    (lambda: C.ReduceLROnPlateau(factor=1.0), "ReduceLROnPlateau.factor", "(0.0, 1.0)"),
    (lambda: C.ReduceLROnPlateau(patience=-2), "ReduceLROnPlateau.patience", "integer >= 0"),
    (lambda: C.ReduceLROnPlateau(monitor="f1"), "ReduceLROnPlateau.monitor", "'val_loss'"),
    (lambda: C.RunConfig("bad name"), "RunConfig.name", "letters, digits"),
])
def test_bad_values_name_the_field_and_what_is_allowed(make, field, allowed):
    with pytest.raises(C.ConfigError) as err:
        make()
    assert field in str(err.value) and allowed in str(err.value)
    assert isinstance(err.value, ValueError)


def test_keras_default_learning_rates():
    assert C.OptimConfig("sgd").learning_rate == 0.01
    for name in ("adam", "adamw", "rmsprop"):
        assert C.OptimConfig(name).learning_rate == 1e-3
    assert C.OptimConfig("adam").epsilon == 1e-7


def test_one_dropout_rate_applies_to_every_layer_and_configs_are_frozen():
    cfg = C.ModelConfig(hidden=(8, 4, 2), dropout=0.3)
    assert cfg.dropout == (0.3, 0.3, 0.3)
    with pytest.raises(AttributeError):
        cfg.l2 = 1.0


def test_monitor_direction_follows_keras_auto():
    assert C.monitor_sign("val_loss", "auto") == 1.0
    assert C.monitor_sign("val_accuracy", "auto") == -1.0
    assert C.monitor_sign("val_loss", "max") == -1.0


def test_from_dict_reads_back_what_to_dict_wrote():
    run = C.RunConfig(
        "r", model=C.MLP((8, 4), dropout=(0.1, 0.0), batch_norm=True),
        optim=C.OptimConfig("sgd", 0.05, momentum=0.9, nesterov=True),
        train=C.TrainConfig(dataset=None, epochs=3, validation_split=0.2),
        hooks=C.HooksConfig(early_stopping=C.EarlyStopping(baseline=0.5),
                            schedule=C.CosineSchedule(period=4), lr_composition="scale"),
        label="a label")
    assert C.from_dict(C.to_dict(run)) == run


def test_the_public_mlp_leaves_input_and_classes_to_the_data():
    m = C.MLP((32,), dropout=0.3, l2=1e-4)
    assert m.hidden == (32,) and m.dropout == (0.3,) and m.l2 == 1e-4
    assert m.output_init == "glorot_uniform" and m.output_l2 == 0.0  # Keras's Dense defaults


def test_mlp_takes_kerass_kernel_initializer_and_names_the_allowed_arguments():
    import jaxmlp

    assert jaxmlp.MLP(kernel_initializer="he_normal") == jaxmlp.MLP(kernel_init="he_normal")
    for call, match in [
        (lambda: jaxmlp.MLP(kernel_initializer="he_normal", kernel_init="he_uniform"),
         "same setting"),
        (lambda: jaxmlp.MLP(kernel_initializer="orthogonal"), "kernel_init='orthogonal'"),
        (lambda: jaxmlp.MLP(kernel_regularizer=0.01), r"\(an L2 penalty on the hidden "
                                                      r"kernels is l2=c\); allowed hidden"),
        (lambda: jaxmlp.MLP(use_bias=False), "MLP: unknown argument use_bias=False; allowed"),
    ]:
        with pytest.raises(C.ConfigError, match=match) as err:
            call()
        assert "\n" not in str(err.value)
