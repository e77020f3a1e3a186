"""A catalogue of bad input across the public API.

Every case must raise an error that names the argument (or the object at
fault), shows what was received and says what is expected or how to fix it;
and none may leave partial state behind (checked on masks and files).
"""

import os

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, toy_data, two_replica_strategy
from tf_lottery.core.walk import model_variables


def _wrapped():
    return tfl.prunable(mlp(input_dim=20, hidden=(16,), classes=4))


def _fit(model, callback, epochs=2):
    x, y = toy_data(64, 20, 4)
    compile_classifier(model)
    model.fit(x, y, batch_size=32, epochs=epochs, callbacks=[callback], verbose=0)


def _ticket_file(tmp_path, content: bytes | None = None):
    path = str(tmp_path / "ticket.npz")
    model = _wrapped()
    tfl.prune(model, target_sparsity=0.5)
    tfl.Ticket.from_model(model).save(path)
    if content is not None:
        open(path, "wb").write(content)
    return path


def _damaged_ticket_file(tmp_path, damage: str):
    """A ticket for `_wrapped()` whose third weight (the output kernel) is damaged."""
    path = str(tmp_path / "ticket.npz")
    model = _wrapped()
    tfl.prune(model, target_sparsity=0.5)
    weights = [v.numpy() for v in model_variables(model)]
    if damage == "nan":
        weights[2][0, 0] = np.nan
    else:
        weights[2] = weights[2].astype(np.float64)
    tfl.Ticket.from_model(model, weights=weights).save(path)
    return path


def _prune_a_nan_weight_2_4():
    # Was: the NaN weight kept and the masks changed (only the unstructured path checked).
    model = tfl.prunable(mlp(input_dim=8, hidden=(8,), classes=4))
    kernel = tfl.prune_wrappers(model)[0].pruned_weights[0]
    kernel.assign(np.where(np.eye(8, 8, dtype=bool), np.nan, kernel.numpy()))
    tfl.prune(model, structure="2:4")


def _fit_with_ema():
    # Was: most pruned weights non-zero after fit (EMA written back unmasked).
    model = _wrapped()
    tfl.prune(model, rate=0.5)
    x, y = toy_data(64, 20, 4)
    compile_classifier(model, keras.optimizers.Adam(use_ema=True))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)


class _HidesALayer(keras.Model):
    def __init__(self):
        super().__init__()
        self.head = keras.layers.Dense(4)
        self.hidden = keras.layers.Dense(3)
        self.hidden.build((None, 20))
        del self.hidden  # still tracked by Keras (its weights are the model's), in no attribute

    def call(self, x):
        return self.head(x)


def _unstructured_ticket():
    model = _wrapped()
    tfl.prune(model, target_sparsity=0.5)
    return model


def _unreachable_layer():
    model = _HidesALayer()
    model(np.zeros((1, 20), "float32"))
    tfl.prunable(model)


def _calibration():
    return np.random.default_rng(0).normal(size=(16, 20)).astype("float32")


def _embedding_only():
    return tfl.prunable(keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(10, 4)]))


def _residual_without_a_partner():
    # `b` is left dense, so `a`'s filters (added to `b`'s) cannot go alone.
    inputs = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(4, 1, name="a")(inputs)
    b = keras.layers.Conv2D(4, 1, name="b")(inputs)
    x = keras.layers.Conv2D(4, 1, name="reader")(keras.layers.Add()([a, b]))
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return tfl.prunable(keras.Model(inputs, outputs), exclude=["b"])


def _grouped_conv():
    inputs = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(4, 1, groups=2, name="grouped")(inputs)
    x = keras.layers.Conv2D(4, 1, name="plain")(x)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return tfl.prunable(keras.Model(inputs, outputs))


def _fit_half_pruned(callback):
    # A model that starts at 50% (e.g. one-shot masks seeding IMP).
    model = _wrapped()
    tfl.prune(model, target_sparsity=0.5)
    _fit(model, callback)


def _mirrored_model_wrapped_outside():
    with two_replica_strategy().scope():
        model = mlp(input_dim=20, hidden=(16,), classes=4)
    tfl.prunable(model)


CASES = {
    # prune()
    "rate_above_one": (
        lambda m, p: tfl.prune(m, rate=1.5),
        r"`rate`: expected a float in \[0, 1\). Received: rate=1.5",
    ),
    "rate_is_one": (
        lambda m, p: tfl.prune(m, rate=1.0),
        r"`rate`: expected a float in \[0, 1\). Received: rate=1.0",
    ),
    "rate_negative": (lambda m, p: tfl.prune(m, rate=-0.2), r"Received: rate=-0.2"),
    "rate_wrong_type": (lambda m, p: tfl.prune(m, rate="20%"), r"Received: rate='20%'"),
    "rate_and_target": (
        lambda m, p: tfl.prune(m, rate=0.2, target_sparsity=0.5),
        r"Pass exactly one of `rate`.*Received: rate=0.2, target_sparsity=0.5",
    ),
    "target_past_100": (
        lambda m, p: tfl.prune(m, target_sparsity=1.0),
        r"`target_sparsity`: expected a float in \[0, 1\). Received: target_sparsity=1.0",
    ),
    "unknown_scope": (
        lambda m, p: tfl.prune(m, rate=0.2, scope="net"),
        r"`scope`: expected one of \('global', 'layer'\). Received: scope='net'",
    ),
    "unknown_scorer": (
        lambda m, p: tfl.prune(m, rate=0.2, scorer="l2"),
        r"`scorer`: expected 'magnitude', 'random' or a callable.*Received: scorer='l2'",
    ),
    "layer_rate_unknown_layer": (
        lambda m, p: tfl.prune(m, rate=0.2, layer_rates={"fc9": 0.1}),
        r"`layer_rates`: 'fc9' matches no pruned layer. Pruned layers are: \[",
    ),
    "layer_rate_out_of_range": (
        lambda m, p: tfl.prune(m, rate=0.2, layer_rates={"output": 1.2}),
        r"`layer_rates\['output'\]`: expected a float in \[0, 1\). Received",
    ),
    "scorer_wrong_shapes": (
        lambda m, p: tfl.prune(m, rate=0.2, scorer=lambda ws: [np.ones(3)] * 2),
        r"The scorer returned shape \(3,\) for '.*kernel'; expected \(20, 16\)",
    ),
    "nan_weight_2_4": (
        lambda m, p: _prune_a_nan_weight_2_4(),
        r"`model`: weight '.*kernel' of layer '.*' holds 8 non-finite value\(s\).*Nothing was pruned",
    ),
    "scorer_returns_nan": (
        lambda m, p: tfl.prune(
            m,
            rate=0.2,
            scorer=lambda ws: [np.full(tuple(w.shape), np.nan) for wr in ws for w in wr.pruned_weights],
        ),
        r"`scorer`: it returned 320 non-finite score\(s\) for alive entries of weight '.*kernel'",
    ),
    "unwrapped_model": (
        lambda m, p: tfl.prune(mlp(), rate=0.2),
        r"`model`: '.*' has no PruneWrapper layers. Wrap it first: `model = tfl.prunable\(model\)`",
    ),
    # N:M structure, schedules, GradualPruning, EarlyBird (issue #14)
    "nm_n_above_m": (
        lambda m, p: tfl.prune(m, structure="4:2"),
        r"`structure`: expected None, 'N:M' with integers 1 <= N < M.*Received: structure='4:2'",
    ),
    "nm_m_not_dividing": (
        lambda m, p: tfl.prune(m, structure="2:3"),
        r"'2:3' needs the input dimension .* multiple of 3\. Received layer '.*' with 20 inputs.*"
        r"`tfl\.prunable\(model, exclude=",
    ),
    "nm_past_the_pattern": (
        lambda m, p: tfl.prune(m, target_sparsity=0.7, structure="2:4"),
        r"`target_sparsity`: 0\.7 would prune \d+ more weights, but structure '2:4' spares only \d+",
    ),
    "nm_lottery_target_past_the_pattern": (
        lambda m, p: tfl.LotteryCallback(rounds=2, target_sparsity=0.8, structure="2:4"),
        r"`target_sparsity`: expected at most 0\.5, the most structure '2:4' allows\. Received: target_sparsity=0\.8",
    ),
    # Whole units (issue 23)
    "channels_layer_rates_on_an_unprunable_partner": (
        lambda m, p: tfl.prune(
            _residual_without_a_partner(), target_sparsity=0.5, structure="channels", layer_rates={"a": 0.5}
        ),
        r"`layer_rates`: 'a' names layer 'a', whose units cannot be pruned under structure='channels': "
        r"its units are produced by 'b', which is not wrapped.*Wrap the layer named there too.*or leave 'a' dense",
    ),
    "channels_layer_rates_on_the_output": (
        lambda m, p: tfl.prune(m, target_sparsity=0.5, structure="channels", layer_rates={"output": 0.1}),
        r"`layer_rates`: 'output' names layer 'output'.*reach the model output 'output'. Leave 'output' dense",
    ),
    "channels_grouped_conv": (
        lambda m, p: tfl.prune(_grouped_conv(), rate=0.5, structure="channels", layer_rates={"grouped": 0.5}),
        r"'grouped' names layer 'grouped'.*belong to the grouped convolution 'grouped' \(groups=2\)",
    ),
    "channels_no_prunable_units": (
        lambda m, p: tfl.prune(
            tfl.prunable(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="only")])),
            rate=0.5,
            structure="channels",
        ),
        r"`structure`: 'channels' found no prunable units in model '.*'.*'only': its units reach the "
        r"model output 'only'",
    ),
    "channels_bn_gamma_without_batchnorm": (
        lambda m, p: tfl.prune(m, rate=0.5, structure="channels", scorer="bn_gamma"),
        r"`scorer`: 'bn_gamma' scores a unit by the BatchNormalization.*group 'dense.*' .*has none\. "
        r"Use scorer='l1'",
    ),
    "channels_would_empty_a_group": (
        lambda m, p: tfl.prune(m, target_sparsity=0.99, structure="channels"),
        r"`target_sparsity`: 0\.99 would prune 16 more units of 'dense.*', but only 15 can go while every "
        r"group keeps at least one unit",
    ),
    "channels_without_an_amount": (
        lambda m, p: tfl.prune(m, structure="channels"),
        r"Pass exactly one of `rate` .* with structure='channels'\. Received: rate=None, target_sparsity=None",
    ),
    "heads_without_attention": (
        lambda m, p: tfl.prune(m, rate=0.5, structure="heads"),
        r"`structure`: 'heads' found no attention heads in model '.*'",
    ),
    # RxC blocks (issue #23)
    "block_not_dividing_the_kernel": (
        lambda m, p: tfl.prune(m, target_sparsity=0.5, structure="1x8"),
        r"`structure`: '1x8' blocks span 1 output\(s\) x 8 input\(s\).*Received layer '\w+' with 16 "
        r"outputs and 20 inputs.*`tfl\.prunable\(model, exclude=\['\w+'\]\)`, or choose a block.*'1x4'",
    ),
    "block_without_an_amount": (
        lambda m, p: tfl.prune(m, structure="1x4"),
        r"`structure`: '1x4' blocks need an amount\. Pass `rate`.*Received: structure='1x4'",
    ),
    "block_on_an_embedding": (
        lambda m, p: tfl.prune(
            tfl.prunable(keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(8, 4)])),
            rate=0.5,
            structure="1x4",
        ),
        r"`structure`: block sparsity \('RxC'\) is defined for Dense, Conv and ConvTranspose kernels\. "
        r"Received layer 'embedding\w*' of type Embedding",
    ),
    "gradual_block_not_dividing": (
        lambda m, p: _fit(m, tfl.GradualPruning(tfl.ConstantSparsity(0.5, 0), structure="3x4")),
        r"'3x4' blocks span 3 output\(s\).*with 16 outputs and 20 inputs.*e\.g\. '2x4'",
    ),
    "lottery_block_not_dividing": (
        lambda m, p: _fit(m, tfl.LotteryCallback(rounds=2, pruning_rate=0.5, structure="1x8", verbose=0)),
        r"'1x8' blocks span 1 output\(s\) x 8 input\(s\).*with 16 outputs and 20 inputs",
    ),
    "tflite_report_of_another_file": (
        lambda m, p: tfl.tflite_sparsity_report(b"PK\x03\x04not a flatbuffer"),
        r"`model`: '<bytes>' is not a TensorFlow Lite flatbuffer \(no 'TFL3' identifier\)",
    ),
    "schedule_end_not_after_begin": (
        lambda m, p: tfl.PolynomialDecay(0.0, 0.5, begin_step=100, end_step=100),
        r"`end_step`: expected an int greater than begin_step=100\. Received: end_step=100\. Pass an `end_step`",
    ),
    "schedule_sparsity_one": (
        lambda m, p: tfl.ConstantSparsity(1.0, begin_step=0),
        r"`target_sparsity`: expected a float in \[0, 1\)\. Received: target_sparsity=1\.0",
    ),
    "schedule_decreasing": (
        lambda m, p: tfl.PolynomialDecay(0.6, 0.3, begin_step=0, end_step=100),
        r"`final_sparsity`: expected a float >= initial_sparsity=0\.6.*Received: final_sparsity=0\.3",
    ),
    "gradual_past_the_pattern": (
        lambda m, p: tfl.GradualPruning(tfl.ConstantSparsity(0.6, 0), structure="2:4"),
        r"`schedule`: final sparsity 0\.6 is above 0\.5, the most structure '2:4' allows",
    ),
    "gradual_on_an_unwrapped_model": (
        lambda m, p: _fit(
            mlp(input_dim=20, hidden=(16,), classes=4), tfl.GradualPruning(tfl.ConstantSparsity(0.5, 0))
        ),
        r"GradualPruning: model '.*' has no PruneWrapper layers\. Wrap it first",
    ),
    "pruning_summaries_of_a_lottery_callback": (
        lambda m, p: tfl.PruningSummaries(tfl.LotteryCallback(rounds=2, pruning_rate=0.2), str(p)),
        r"`gradual`: expected the `tfl\.GradualPruning`.*type LotteryCallback\. For a `tfl\.LotteryCallback`, "
        r"use `tfl\.LotterySummaries",
    ),
    "lottery_summaries_of_gradual_pruning": (
        lambda m, p: tfl.LotterySummaries(tfl.GradualPruning(tfl.ConstantSparsity(0.5, 0)), str(p)),
        r"`lottery`: expected the `tfl\.LotteryCallback`.*type GradualPruning\. For a `tfl\.GradualPruning`, "
        r"use `tfl\.PruningSummaries\(gradual, log_dir\)`",
    ),
    "early_bird_epsilon_zero": (
        lambda m, p: tfl.EarlyBird(0.9, epsilon=0),
        r"`epsilon`: expected a float > 0\. Received: epsilon=0",
    ),
    # prunable() / PruneWrapper / strip()
    "prunable_not_a_model": (
        lambda m, p: tfl.prunable([1, 2]),
        r"`model`: expected a Keras model or layer. Received: model=\[1, 2\] of type list",
    ),
    "nothing_to_prune": (
        lambda m, p: tfl.prunable(keras.Sequential([keras.Input((3,)), keras.layers.ReLU()])),
        r"has nothing to prune: no Dense",
    ),
    "exclude_bad_item": (
        lambda m, p: tfl.prunable(mlp(), exclude=[1.5]),
        r"`exclude`: expected layer names, Keras layer classes, or a predicate.*Received an element 1.5 of type float",
    ),
    "exclude_name_matches_no_layer": (
        # Was: silently ignored, and the output layer pruned.
        lambda m, p: tfl.prunable(mlp(input_dim=20, hidden=(16,), classes=4), exclude=["ouput"]),
        r"`exclude`: 'ouput' matches no layer of '.*' \(names are compared exactly\); did you mean 'ouput' -> 'output'\? "
        r"The prunable layers of '.*' are: \['.*', 'output'\]\. Received: exclude=\['ouput'\]",
    ),
    "exclude_name_of_a_layer_never_wrapped": (
        lambda m, p: tfl.prunable(
            keras.Sequential(
                [keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dropout(0.5, name="drop")]
            ),
            exclude=["drop"],
        ),
        r"`exclude`: 'drop' is a Dropout, which is never wrapped, so excluding it changes nothing",
    ),
    "wrapper_unprunable_layer": (
        lambda m, p: tfl.PruneWrapper(keras.layers.Dropout(0.5)),
        r"`layer`: Dropout '.*' has no prunable weights",
    ),
    "set_masks_wrong_shape": (
        lambda m, p: tfl.prune_wrappers(m)[0].set_masks([np.ones((3, 3), bool)]),
        r"`masks` of '.*': mask #0 \(of '.*kernel'\) needs shape \(20, 16\). Received shape \(3, 3\)",
    ),
    "strip_unbuilt": (
        lambda m, p: tfl.strip(tfl.prunable(keras.layers.Dense(3))),
        r"`model`: '.*' is not built. Call it on an input",
    ),
    "shrink_without_wrappers": (
        lambda m, p: tfl.shrink(mlp(input_dim=20, hidden=(16,), classes=4)),
        r"`model`: '\w+' holds no PruneWrapper layers, so nothing is pruned.*tfl.prunable\(model\)",
    ),
    "shrink_unstructured_masks": (
        lambda m, p: tfl.shrink(_unstructured_ticket()),
        r"`model`: nothing can be removed from '\w+': its masks \(\d+ pruned entries\) switch off no whole unit"
        r".*structure='channels'",
    ),
    "mismatched_strategy_scope": (
        lambda m, p: _mirrored_model_wrapped_outside(),
        r"`model`: '.*' was built inside a MirroredStrategy strategy scope, but `prunable` is called outside",
    ),
    # LotteryCallback
    "callback_rounds_zero": (
        lambda m, p: tfl.LotteryCallback(rounds=0, pruning_rate=0.2),
        r"`rounds`: expected an int >= 1. Received: rounds=0",
    ),
    "callback_rate_and_target": (
        lambda m, p: tfl.LotteryCallback(rounds=2, pruning_rate=0.2, target_sparsity=0.5),
        r"Pass exactly one of `pruning_rate`.*Received: pruning_rate=0.2, target_sparsity=0.5",
    ),
    "rewind_malformed": (
        lambda m, p: tfl.LotteryCallback(rounds=2, pruning_rate=0.2, rewind_to="5x"),
        r"`rewind_to`: expected '<N>it'.*Received: rewind_to='5x'",
    ),
    "rewind_negative": (
        lambda m, p: tfl.LotteryCallback(rounds=2, pruning_rate=0.2, rewind_to="-5it"),
        r"Received: rewind_to='-5it'",
    ),
    "retrain_unknown": (
        lambda m, p: tfl.LotteryCallback(rounds=2, pruning_rate=0.2, retrain="lth"),
        r"`retrain`: expected one of \('rewind', 'lr_rewind', 'finetune', 'reinit', 'reinit_imp'\). "
        r"Received: retrain='lth'",
    ),
    "seed_wrong_type": (
        lambda m, p: tfl.LotteryCallback(rounds=2, pruning_rate=0.2, seed="0"),
        r"`seed`: expected an int. Received: seed='0'",
    ),
    "epochs_not_multiple_of_rounds": (
        lambda m, p: _fit(m, tfl.LotteryCallback(rounds=2, pruning_rate=0.2, verbose=0), epochs=3),
        r"fit\(epochs=3\) is not a multiple of rounds=2",
    ),
    "rewind_after_first_round": (
        lambda m, p: _fit(
            m, tfl.LotteryCallback(rounds=2, pruning_rate=0.2, rewind_to="5ep", verbose=0), epochs=4
        ),
        r"`rewind_to`: '5ep' is not inside the first round \(2 epochs\)",
    ),
    "callback_layer_rates_unknown_name": (
        # Was: refused only after round 0 had trained.
        lambda m, p: _fit(
            m, tfl.LotteryCallback(rounds=2, pruning_rate=0.2, layer_rates={"ouput": 0.1}, verbose=0)
        ),
        r"`layer_rates`: 'ouput' matches no pruned layer. Pruned layers are: \[.*'output'",
    ),
    "callback_target_below_the_starting_sparsity": (
        # Was: refused only after round 0 had trained.
        lambda m, p: _fit_half_pruned(tfl.LotteryCallback(rounds=2, target_sparsity=0.3, verbose=0)),
        r"`target_sparsity`: expected at least 0\.5, the sparsity of model .* when fit\(\) started.*"
        r"Received: target_sparsity=0\.3",
    ),
    "rate_per_round_start_above_target": (
        lambda m, p: tfl.rate_per_round(0.5, 2, start_sparsity=0.7),
        r"`start_sparsity`: expected a float in \[0, target_sparsity=0\.5\]\. Received: start_sparsity=0\.7",
    ),
    "callback_ticket_at_unfinished_round": (
        lambda m, p: tfl.LotteryCallback(rounds=2, pruning_rate=0.2).ticket_at(0),
        r"`round_index`: expected a finished round \(none has yet\). Received: round_index=0",
    ),
    "ema_optimizer": (
        lambda m, p: (compile_classifier(m, keras.optimizers.SGD(use_ema=True)), _fit_compiled(m)),
        r"use_ema=True.*Compile with `use_ema=False`",
    ),
    # Tickets
    "ticket_other_architecture": (
        lambda m, p: tfl.Ticket.load(_ticket_file(p)).apply(
            tfl.prunable(mlp(input_dim=20, hidden=(8,), classes=4))
        ),
        r"Ticket '.*ticket.npz' does not fit model '.*': pruned weight #0 is 'dense.*/kernel' of shape \(20, 16\) "
        r"in the ticket but",
    ),
    "ticket_nan_rewind_weight": (
        # Was: masks and earlier weights written, then the NaN weights applied too.
        lambda m, p: tfl.Ticket.load(_damaged_ticket_file(p, "nan")).apply(m),
        r"Ticket '.*ticket.npz' is not a valid ticket: weight #2 '.*kernel' \(for '.*kernel'\) holds 1 NaN or Inf",
    ),
    "ticket_float64_weight": (
        lambda m, p: tfl.Ticket.load(_damaged_ticket_file(p, "float64")).apply(m),
        r"Ticket '.*ticket.npz' does not fit model '.*': weight #2 '.*kernel' \(for '.*kernel'\) has dtype "
        r"float64 in the ticket, which does not convert exactly to the model's float32",
    ),
    "ticket_truncated": (
        lambda m, p: tfl.Ticket.load(_ticket_file(p, b"PK\x03\x04trunc")),
        r"is not a readable tf_lottery ticket \(corrupted, truncated or another file type\)",
    ),
    "ticket_missing": (
        lambda m, p: tfl.Ticket.load(str(p / "none.npz")),
        r"`path`: no ticket file at '.*none.npz'",
    ),
    "ticket_bad_path_type": (
        lambda m, p: tfl.Ticket.from_model(m).save(42),
        r"`path`: expected a file path. Received: path=42",
    ),
    "snapshot_other_model": (
        lambda m, p: tfl.Snapshot.capture(mlp(), 0).restore_weights(m),
        r"The rewind snapshot does not fit this model: it holds \d+ variables, the model has \d+",
    ),
    "random_scorer_seed": (
        lambda m, p: tfl.scoring.RandomScorer(seed=1.5),
        r"`seed`: expected an int. Received: seed=1.5",
    ),
    "mnist1d_validation": (
        lambda m, p: __import__("tf_lottery.datasets", fromlist=["x"]).mnist1d(validation=-1),
        r"`validation`: expected an int >= 0. Received: validation=-1",
    ),
    # Callbacks speak Keras (mode, config), the distiller's label loss
    "callback_mode_unknown": (
        lambda m, p: tfl.LotteryCallback(rounds=2, pruning_rate=0.2, mode="maximum"),
        r"`mode`: expected one of \('auto', 'min', 'max'\). Received: mode='maximum'",
    ),
    "callback_scorer_unknown": (
        # Was: accepted, and failed only when the first round ended.
        lambda m, p: tfl.LotteryCallback(rounds=2, pruning_rate=0.2, scorer="l1"),
        r"`scorer`: expected 'magnitude', 'random' or a callable.*Received: scorer='l1'",
    ),
    "callback_config_of_callable_scorer": (
        # Was: the config said scorer="magnitude", another callback.
        lambda m, p: tfl.LotteryCallback(rounds=2, pruning_rate=0.2, scorer=lambda w: []).get_config(),
        r"argument `scorer` is a callable, which a config cannot hold. Received: scorer=<function",
    ),
    "sparse_training_config_of_loss_function": (
        # Was: the config said loss=None, the compiled loss.
        lambda m, p: tfl.DynamicSparseTraining("set", loss=keras.losses.mean_squared_error).get_config(),
        r"argument `loss` is a function, which a config cannot hold.*Pass it by name",
    ),
    "reinit_without_the_tickets_masks": (
        # Was: IMP on the reinitialised networks, whose masks drift from the ticket's.
        lambda m, p: tfl.LotteryCallback(rounds=2, pruning_rate=0.2, retrain="reinit"),
        r"`ticket_masks`: retrain='reinit' is Frankle & Carbin's control.*retrain='reinit_imp'",
    ),
    "ema_with_masks": (lambda m, p: _fit_with_ema(), r"use_ema=True.*Use `use_ema=False`"),
    "prunable_layer_out_of_reach": (
        # Was: silently left dense.
        lambda m, p: _unreachable_layer(),
        r"`model`: 1 prunable layer\(s\) of .* could not be wrapped.*`exclude`",
    ),
    "mask_gradients_not_a_bool": (
        lambda m, p: tfl.PruneWrapper(keras.layers.Dense(2), mask_gradients=1),
        r"`mask_gradients`: expected True or False. Received: mask_gradients=1",
    ),
    # tfl.oneshot (issue 24): every check before any weight changes.
    "oneshot_sparsity_one": (
        lambda m, p: tfl.oneshot.wanda(m, _calibration(), 1.0),
        r"`sparsity`: expected a float in \[0, 1\). Received: sparsity=1.0",
    ),
    "oneshot_calibration_wrong_shape": (
        lambda m, p: tfl.oneshot.sparsegpt(m, np.zeros((8, 7), "float32"), 0.5),
        r"(?s)`calibration_data`: the model could not be called.*expected axis -1.*Received: calibration_data=<float32 \(8, 7\)>",
    ),
    "oneshot_calibration_text": (
        lambda m, p: tfl.oneshot.wanda(m, np.full((4, 20), "word"), 0.5),
        r"`calibration_data`: expected numeric inputs such as the model takes \(got dtype <U4\); tokenize",
    ),
    "oneshot_calibration_empty": (
        lambda m, p: tfl.oneshot.wanda(m, np.zeros((0, 20), "float32"), 0.5),
        r"`calibration_data`: expected at least one calibration sample \(it is empty\)",
    ),
    "oneshot_n_m_misfit": (
        # The hidden layer has 20 inputs, not a multiple of 8.
        lambda m, p: tfl.oneshot.sparsegpt(m, _calibration(), 0.75, structure="2:8"),
        r"`structure`: '2:8' needs the input dimension.*multiple of 8. Received layer '\w+' with 20 inputs",
    ),
    "oneshot_sparsity_against_structure": (
        lambda m, p: tfl.oneshot.wanda(m, _calibration(), 0.3, structure="2:4"),
        r"`sparsity`: structure '2:4' keeps 2 of every 4 weights.*Received: sparsity=0.3. Pass sparsity=0.5",
    ),
    "oneshot_blocksize_against_structure": (
        lambda m, p: tfl.oneshot.sparsegpt(m, _calibration(), 0.5, structure="2:4", blocksize=6),
        r"`blocksize`: with structure '2:4' it must be a multiple of 4.*Received: blocksize=6",
    ),
    "oneshot_percdamp_zero": (
        lambda m, p: tfl.oneshot.sparsegpt(m, _calibration(), 0.5, percdamp=0.0),
        r"`percdamp`: expected a float > 0. Received: percdamp=0.0",
    ),
    "oneshot_model_not_wrapped": (
        lambda m, p: tfl.oneshot.wanda(mlp(input_dim=20, hidden=(16,), classes=4), _calibration(), 0.5),
        r"`model`: '\w+' has no prunable layer \(no PruneWrapper\). Wrap it first: `model = tfl.prunable",
    ),
    "oneshot_nothing_to_calibrate": (
        lambda m, p: tfl.oneshot.wanda(_embedding_only(), np.zeros((4, 3), "int32"), 0.5),
        r"`model`: wanda can prune none of the prunable weights.*tfl.oneshot.magnitude",
    ),
    "distiller_unknown_label_loss": (
        lambda m, p: tfl.KDDistiller(mlp(input_dim=20, classes=4), m).compile(loss="crossentropy_of_dreams"),
        r"`loss`: expected a loss Keras knows by name.*Received: loss='crossentropy_of_dreams'",
    ),
}


def _fit_compiled(model):
    x, y = toy_data(64, 20, 4)
    model.fit(
        x,
        y,
        batch_size=32,
        epochs=2,
        callbacks=[tfl.LotteryCallback(rounds=2, pruning_rate=0.2, verbose=0)],
        verbose=0,
    )


class TestBadInputCatalogue(TestCase):
    def test_the_catalogue_is_broad(self):
        assert len(CASES) >= 25

    @pytest.mark.parametrize("case", sorted(CASES))
    def test_clear_error_and_no_partial_state(self, case, tmp_path):
        make_error, message = CASES[case]
        model = _wrapped()
        masks_before = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        kernels_before = [w.numpy().copy() for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]
        files_before = sorted(os.listdir(tmp_path))
        with pytest.raises((ValueError, FileNotFoundError)) as raised:
            make_error(model, tmp_path)
        assert raised.match(message), str(raised.value)
        masks_after = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        kernels_after = [w.numpy() for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]
        for a, b in zip(masks_before, masks_after):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(kernels_before, kernels_after):
            np.testing.assert_array_equal(a, b)
        # Only the files a case wrote on purpose before failing may exist.
        leftovers = set(os.listdir(tmp_path)) - set(files_before) - {"ticket.npz"}
        assert not leftovers, leftovers


def _config_with(path, value):
    from tf_lottery.experiments.default_config import get_config

    config = get_config("smoke")
    section, key = path.split(".") if "." in path else (None, path)
    (config[section] if section else config)[key] = value
    if path == "model.kernel_initializer":
        config.model.model_init = "orthogonal"  # two initializers for the kernels
    return config


CLI_CASES = {
    "structure_block_not_dividing_a_layer": (
        "pruning.structure",
        "1x16",
        r"`config.pruning.structure`='1x16': .*'1x16' blocks span 1 output\(s\) x 16 input\(s\).*Received "
        r"layer '\w+' with \d+ outputs and 40 inputs.*leave layers dense with `config.pruning.exclude`",
    ),
    "structure_not_a_block": (
        "pruning.structure",
        "2:4",
        r"`config.pruning.structure`: expected '' \(single weights\), 'RxC' whole blocks.*"
        r"Received: pruning.structure='2:4'",
    ),
    "unknown_model": (
        "model.name",
        "resnet9000",
        r"`config.model.name`: expected one of \[.*Received: (model\.)?name='resnet9000'",
    ),
    "unknown_dataset": (
        "dataset.name",
        "mnist3d",
        r"`config.dataset.name`: expected one of .*Received: dataset.name='mnist3d'",
    ),
    "malformed_rewind": (
        "pruning.rewind_to",
        "5x",
        r"`config.pruning.rewind_to`: expected '<N>it'.*Received: pruning.rewind_to='5x'",
    ),
    "rate_out_of_range": (
        "pruning.rate",
        1.5,
        r"`config.pruning.rate`: expected a number in \[0.0, 1.0\). Received: pruning.rate=1.5",
    ),
    "unknown_experiment_kind": (
        "experiment",
        "lotto",
        r"`config.experiment`: expected one of .*Received: experiment='lotto'",
    ),
    "unknown_retrain_mode": (
        "pruning.retrain",
        "rewinding",
        r"`config.pruning.retrain`: expected one of .*Received: pruning.retrain='rewinding'",
    ),
    "unknown_scorer": (
        "pruning.scorer",
        "sailency",
        r"`config.pruning.scorer`: expected one of \('magnitude', 'random'\). Received: pruning.scorer='sailency'",
    ),
    "data_scorer_from_a_config": (
        "pruning.scorer",
        "snip",
        r"`config.pruning.scorer`: expected one of \('magnitude', 'random'\); 'snip' scores with batches of "
        r"data and is available from the Python API \(`tfl.prune\(model, rate, scorer=tfl.SNIPScorer",
    ),
    "unknown_control": (
        "run.branches",
        "reinit,magic",
        r"`config.run.branches`: unknown control 'magic'; expected",
    ),
    "zero_batch_size": (
        "train.batch_size",
        0,
        r"`config.train.batch_size`: expected an int >= 1. Received: train.batch_size=0",
    ),
    "unknown_optimizer": (
        "train.optimizer",
        "adamax9",
        r"`config.train.optimizer`: expected one of .*Received: train.optimizer='adamax9'",
    ),
    "subsample_fraction_above_one": (
        "dataset.subsample_fraction",
        1.5,
        r"`config.dataset.subsample_fraction`: expected a number in \(0, 1\]. Received: .*=1.5",
    ),
    "random_labels_fraction_negative": (
        "dataset.random_labels_fraction",
        -0.1,
        r"`config.dataset.random_labels_fraction`: expected a number in \[0, 1\]. Received: .*=-0.1",
    ),
    "negative_transformation_seed": (
        "dataset.transformation_seed",
        -3,
        r"`config.dataset.transformation_seed`: expected an int >= 0. Received: .*=-3",
    ),
    "data_order_seed_below_minus_one": (
        "train.data_order_seed",
        -5,
        r"`config.train.data_order_seed`: expected an int >= -1. Received: train.data_order_seed=-5",
    ),
    "unknown_model_init": (
        "model.model_init",
        "he_normal",
        r"`config.model.model_init`: expected one of \('', 'kaiming_normal'.*Received: model.model_init='he_normal'",
    ),
    "unknown_batchnorm_init": (
        "model.batchnorm_init",
        "ones",
        r"`config.model.batchnorm_init`: expected one of \('', 'uniform'.*Received: model.batchnorm_init='ones'",
    ),
    "model_init_with_kernel_initializer": (
        "model.kernel_initializer",
        "he_normal",
        r"`config.model.model_init`: expected '' when `config.model.kernel_initializer` is set",
    ),
    "unknown_random_start": (
        "run.branches",
        "random_global_from_middle",
        r"`config.run.branches`: unknown control 'random_global_from_middle'",
    ),
    "pretrain_classes_repeated": (
        "pretrain.classes",
        "0-5,5",
        r"`config.pretrain.classes`: expected distinct class indices or ranges.*Received: '0-5,5'",
    ),
    "bad_layer_rates": (
        "pruning.layer_rates",
        "output=2",
        r"`pruning.layer_rates`: expected 'layer=rate' pairs.*Received: 'output=2'",
    ),
    # Known once the data is loaded; they used to leave hparams.json and config.json behind.
    "exclude_pattern_matches_no_layer": (
        "pruning.exclude",
        "ouput,fc*",
        r"`config.pruning.exclude`='ouput,fc\*': 'ouput' matches no prunable layer .*Its prunable layers are: \[",
    ),
    "batch_larger_than_the_data": (
        "train.batch_size",
        100000,
        r"`config.train.batch_size`: 100000 is larger than the training set of 'mnist1d' \(3500 examples\)",
    ),
    "validation_not_below_the_training_set": (
        "dataset.validation",
        4000,
        r"`validation`: 4000 must be smaller than the training set \(4000 samples\)",
    ),
    # A misspelt key names the closest known one (did-you-mean).
    "misspelt_train_key": (
        "train.lrr",
        0.1,
        r"Unknown config key `config.train.lrr`. Did you mean `config.train.lr`\? Known keys of `config.train`",
    ),
    "rewind_point_after_training": (
        "pruning.rewind_to",
        "1000ep",
        r"`config.pruning.rewind_to`: '1000ep' is step \d+, not before the end of training",
    ),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_command_line_config_errors(case, tmp_path):
    from tf_lottery.experiments import run_experiment

    path, value, message = CLI_CASES[case]
    with pytest.raises(ValueError, match=message):
        run_experiment(_config_with(path, value), str(tmp_path), log=lambda line: None)
    assert os.listdir(tmp_path) == []  # refused before anything was written


def test_catalogue_covers_api_and_command_line():
    assert len(CASES) + len(CLI_CASES) >= 25 and len(CLI_CASES) >= 10


def _sparse_config(kind, key, value):
    from tf_lottery.experiments.kinds.sparse_training import defaults

    config = defaults(kind)
    config.sparse[key] = value
    return config


# The rigl / set / static kinds' own options (more in tests/experiments/kinds/test_sparse_training.py).
SPARSE_CLI_CASES = {
    "unknown_distribution": (
        ("static", "distribution", "erdos"),
        r"`config.sparse.distribution`: expected one of \('uniform', 'erdos_renyi', 'erdos_renyi_kernel', "
        r"'er', 'erk'\). Received: sparse.distribution='erdos'",
    ),
    "unknown_anneal": (
        ("rigl", "drop_fraction_anneal", "cosin"),
        r"`config.sparse.drop_fraction_anneal`: expected one of 'cosine', 'constant', 'linear' or "
        r"'exponential_<k>'.*Received: sparse.drop_fraction_anneal='cosin'",
    ),
    "unknown_grow_init": (
        ("set", "grow_init", "ones"),
        r"`config.sparse.grow_init`: expected one of \('zeros', 'random_normal', 'initial_value'\). "
        r"Received: sparse.grow_init='ones'",
    ),
    "drop_fraction_out_of_range": (
        ("rigl", "drop_fraction", 1.5),
        r"`config.sparse.drop_fraction`: expected a fraction in \(0, 1\]. Received: sparse.drop_fraction=1.5",
    ),
}


@pytest.mark.parametrize("case", sorted(SPARSE_CLI_CASES))
def test_sparse_training_config_errors(case, tmp_path):
    from tf_lottery.experiments import registry

    (kind, key, value), message = SPARSE_CLI_CASES[case]
    with pytest.raises(ValueError, match=message):
        registry.run(_sparse_config(kind, key, value), str(tmp_path), log=lambda line: None)
    assert os.listdir(tmp_path) == []  # refused before anything was written
