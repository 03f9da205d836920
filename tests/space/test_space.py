import math
import pickle
from pathlib import Path

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.trial import FixedTrial

from regtune.config import REGULARIZER_OFF, RegConfig
from regtune.space.space import (
    REGULARIZER_FAMILIES,
    CategoricalParam,
    FloatParam,
    IntParam,
    RegularizerFamily,
    SearchSpace,
    SearchSpaceError,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

REQUIRED = ["cocktail", "default", "image", "minimal"]
SHIPPED = SearchSpace.available()
FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _write(directory: Path, text: str, name: str = "space.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def _ask(space: SearchSpace, n_trials: int, seed: int = 0) -> list[tuple[optuna.trial.Trial, RegConfig]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n_trials):
        trial = study.ask()
        out.append((trial, space.sample(trial)))
        study.tell(trial, 0.0)
    return out


def _all_on_params(space: SearchSpace) -> dict:
    """Every switch on, each param at a value inside its range."""
    params = dict(space.baseline_params())
    for family in space.regularizers:
        params[family.switch_param] = True
        for p in family.params:
            params[p.name] = p.choices[-1] if isinstance(p, CategoricalParam) else p.high
    return params


# ---------------------------------------------------------------- shipped spaces


def test_required_spaces_are_shipped() -> None:
    assert set(REQUIRED) <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_samples_with_a_real_study(name: str) -> None:
    space = SearchSpace.from_yaml(name)
    assert space.name == name and space.description
    conditional = {p.name: f for f in space.regularizers for p in f.params}
    seen_on = set()
    for trial, config in _ask(space, 20):
        assert isinstance(config, RegConfig)
        assert space.to_config(trial.params) == config
        for param_name, family in conditional.items():
            on = trial.params[family.switch_param]
            assert (param_name in trial.params) == on, (param_name, trial.params)
        for family in space.regularizers:
            if trial.params[family.switch_param]:
                seen_on.add(family.name)
                assert getattr(config, family.switch) != REGULARIZER_OFF[family.switch]
        switches_on = [f for f in space.regularizers if trial.params[f.switch_param]]
        assert bool(config.active_regularizers()) == bool(switches_on)
    assert len(seen_on) >= len(space.regularizers) // 2


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_grouped_multivariate_tpe_handles_the_conditional_params() -> None:
    space = SearchSpace.from_yaml("default")
    sampler = optuna.samplers.TPESampler(multivariate=True, group=True, n_startup_trials=5, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial(space.baseline_params())
    for _ in range(20):
        trial = study.ask()
        config = space.sample(trial)
        study.tell(trial, len(config.active_regularizers()))
    assert study.trials[0].params == space.baseline_params()
    assert space.to_config(study.best_params).active_regularizers() == []


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_samples_with_fixed_trial_all_on(name: str) -> None:
    space = SearchSpace.from_yaml(name)
    params = _all_on_params(space)
    config = space.sample(FixedTrial(params))
    assert config == space.to_config(params)
    for family in space.regularizers:
        assert getattr(config, family.switch) != REGULARIZER_OFF[family.switch]
        for p in family.params:
            assert getattr(config, p.name) == params[p.name]


@pytest.mark.parametrize("name", SHIPPED)
def test_baseline_has_no_regularizers_and_uses_defaults(name: str) -> None:
    space = SearchSpace.from_yaml(name)
    baseline = space.baseline_params()
    assert all(baseline[f"use_{family}"] is False for family in space.families())
    config = space.to_config(baseline)
    assert config.active_regularizers() == []
    for p in space.params:
        if p.name not in ("n_layers", "width", "conv_channels"):
            assert getattr(config, p.name) == p.default


def test_enqueued_baseline_is_the_first_trial() -> None:
    space = SearchSpace.from_yaml("default")
    study = optuna.create_study()
    study.enqueue_trial(space.baseline_params())
    trial = study.ask()
    config = space.sample(trial)
    assert trial.params == space.baseline_params()
    assert config.active_regularizers() == []
    assert config.hidden_layer_sizes == (128, 128) and config.lr == 1e-3 and config.batch_size == 128


def test_default_space_has_every_regularizer_family_but_image_augmentation() -> None:
    families = set(SearchSpace.from_yaml("default").families())
    assert families == set(REGULARIZER_FAMILIES) - {"augment"}
    assert set(SearchSpace.from_yaml("cocktail").families()) == families
    assert SearchSpace.from_yaml("minimal").families() == ["l2", "dropout", "early_stopping"]


def test_image_space_maps_channels_and_augment() -> None:
    space = SearchSpace.from_yaml("image")
    params = {**space.baseline_params(), "conv_channels": "32-64-128", "use_augment": True}
    config = space.to_config(params)
    assert config.architecture == "cnn"
    assert config.conv_channels == (32, 64, 128)
    assert config.augment == "image" and config.active_regularizers() == ["augment"]


def test_every_regularizer_switch_belongs_to_exactly_one_family() -> None:
    switches = [fields[0] for fields in REGULARIZER_FAMILIES.values()]
    assert sorted(switches) == sorted(REGULARIZER_OFF)
    owned = [f for fields in REGULARIZER_FAMILIES.values() for f in fields]
    assert len(owned) == len(set(owned)) and set(owned) <= set(RegConfig.field_names())


def test_summary_rows_and_yaml_text_round_trip(tmp_path: Path) -> None:
    for name in SHIPPED:
        space = SearchSpace.from_yaml(name)
        row = space.summary()
        assert row["name"] == name and row["families"] == space.families()
        assert row["params"] == len(space.params) + sum(1 + len(f.params) for f in space.regularizers)
        again = SearchSpace.from_yaml(_write(tmp_path, space.to_yaml_text(), f"{name}.yaml"))
        assert again == space


# ---------------------------------------------------------------- to_config semantics

SPACE = """\
description: test space
fixed:
  max_epochs: 5
  early_stopping: true
params:
  n_layers: {type: int, low: 1, high: 3, default: 2}
  width: {type: int, low: 8, high: 64, log: true, default: 16}
  lr: {type: float, low: 1e-4, high: 1e-1, log: true, default: 1e-3}
  batch_size: {type: categorical, choices: [16, 32], default: 32}
regularizers:
  dropout:
    dropout: {type: float, low: 0.1, high: 0.5}
    dropout_variant: {type: categorical, choices: [standard, alpha]}
  batch_norm:
  spectral_norm:
"""


def test_fixed_regularizer_holds_in_trials_but_not_in_the_baseline(tmp_path: Path) -> None:
    space = SearchSpace.from_yaml(_write(tmp_path, SPACE))
    assert space.fixed["early_stopping"] is True
    baseline = space.to_config(space.baseline_params())
    assert baseline.active_regularizers() == [] and baseline.early_stopping is False
    config = space.to_config({**space.baseline_params(), "use_spectral_norm": True})
    assert config.active_regularizers() == ["spectral_norm", "early_stopping"]


def test_to_config_maps_derived_params_and_switch_only_families(tmp_path: Path) -> None:
    space = SearchSpace.from_yaml(_write(tmp_path, SPACE))
    config = space.to_config({"n_layers": 3, "width": 8, "use_batch_norm": True, "use_dropout": True,
                              "dropout": 0.2, "dropout_variant": "alpha"})
    assert config.hidden_layer_sizes == (8, 8, 8)
    assert config.batch_norm == "before_activation" and config.spectral_norm is False
    assert (config.dropout, config.dropout_variant) == (0.2, "alpha")
    assert config.lr == 1e-3 and config.max_epochs == 5


def test_n_layers_0_is_a_linear_model_and_a_prior_can_ask_for_it(tmp_path: Path) -> None:
    text = SPACE.replace("n_layers: {type: int, low: 1,", "n_layers: {type: int, low: 0,")
    text += "priors:\n  - {n_layers: 0, lr: 0.01, use_dropout: true, dropout: 0.2, dropout_variant: standard}\n"
    space = SearchSpace.from_yaml(_write(tmp_path, text))
    assert space.to_config({"n_layers": 0, "width": 32}).hidden_layer_sizes == ()
    prior = space.prior_params()[0]
    assert prior["n_layers"] == 0 and space.to_config(prior).hidden_layer_sizes == ()
    with pytest.raises(SearchSpaceError, match="n_layers=-1 must be an integer >= 0"):
        SearchSpace.from_yaml(_write(tmp_path, text.replace("low: 0,", "low: -1,")))


def test_tuple_fields_are_sampled_as_text(tmp_path: Path) -> None:
    text = ("params:\n  hidden_layer_sizes: {type: categorical, choices: ['64-32', '128'], default: '128'}\n"
            "  conv_channels: {type: categorical, choices: ['8-16'], default: '8-16'}\n")
    space = SearchSpace.from_yaml(_write(tmp_path, text))
    config = space.sample(FixedTrial({"hidden_layer_sizes": "64-32", "conv_channels": "8-16"}))
    assert config.hidden_layer_sizes == (64, 32) and config.conv_channels == (8, 16)
    with pytest.raises(SearchSpaceError, match="line 2: params.hidden_layer_sizes.choices"):
        SearchSpace.from_yaml(_write(tmp_path, text.replace("'64-32'", "'64x32'")))


def test_to_config_treats_missing_families_as_off(tmp_path: Path) -> None:
    space = SearchSpace.from_yaml(_write(tmp_path, SPACE))
    config = space.to_config({"use_dropout": False, "dropout": 0.3})
    assert config.dropout == 0.0 and config.active_regularizers() == []
    assert RegConfig().early_stopping is True  # the space turns RegConfig's default off


def test_to_config_reads_logged_text_params(tmp_path: Path) -> None:
    space = SearchSpace.from_yaml(_write(tmp_path, SPACE))
    logged = {"n_layers": "2", "width": "32", "lr": "0.01", "batch_size": "16",
              "use_dropout": "True", "dropout": "0.25", "dropout_variant": "standard",
              "use_batch_norm": "False", "use_spectral_norm": "false"}
    config = space.to_config(logged)
    assert config.hidden_layer_sizes == (32, 32) and config.lr == 0.01 and config.batch_size == 16
    assert config.active_regularizers() == ["dropout", "early_stopping"]


@pytest.mark.parametrize("params, words", [
    ({"lr2": 0.1}, ["unknown params", "lr2"]),
    ({"use_dropout": True}, ["use_dropout is on", "dropout"]),
    ({"use_dropout": "maybe"}, ["use_dropout", "maybe"]),
    ({"batch_size": 64}, ["64", "16, 32"]),
    ({"lr": "fast"}, ["search space 'space.yaml'", "fast", "not a number"]),
])
def test_to_config_rejects_params_that_do_not_fit(tmp_path: Path, params: dict, words: list[str]) -> None:
    space = SearchSpace.from_yaml(_write(tmp_path, SPACE))
    with pytest.raises(SearchSpaceError) as info:
        space.to_config(params)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_yaml_1_2_exponent_floats_are_numbers(tmp_path: Path) -> None:
    space = SearchSpace.from_yaml(_write(tmp_path, SPACE))
    assert space.params[2] == FloatParam("lr", 1e-4, 0.1, log=True, default=1e-3)


# ---------------------------------------------------------------- loader errors

ERRORS = {
    "unknown top-level key": ("description: x\nparms: {}\n", 2, "parms"),
    "typo'd param key": ("params:\n  lr:\n    type: float\n    low: 0.001\n    hgih: 0.1\n", 5, "hgih"),
    "unknown param name": ("params:\n  dropuot: {type: float, low: 0.1, high: 0.2, default: 0.1}\n",
                           2, "dropuot"),
    "low > high": ("params:\n  lr: {type: float, low: 0.1, high: 0.01, default: 0.05}\n", 2, "params.lr"),
    "log with low <= 0": ("regularizers:\n  l2:\n    l2:\n      type: float\n      low: 0.0\n"
                          "      high: 0.01\n      log: true\n", 7, "regularizers.l2.l2.log"),
    "dropout high >= 1": ("regularizers:\n  dropout:\n    dropout:\n      type: float\n"
                          "      low: 0.1\n      high: 1.2\n", 6, "regularizers.dropout.dropout.high"),
    "wrong type": ("params:\n\n  lr: {type: float, low: '0.1', high: 0.5, default: 0.2}\n", 3, "params.lr.low"),
    "yaml syntax": ("description: ok\nparams:\n  lr: [1, 2\nfixed: {}\n", 4, "invalid YAML"),
    "unknown family": ("regularizers:\n  dropout: {dropout: {type: float, low: 0.1, high: 0.2}}\n  drop: {}\n",
                       3, "drop"),
    "param of another family": ("regularizers:\n  l2:\n    l2: {type: float, low: 0.1, high: 0.2}\n"
                                "    l1: {type: float, low: 0.1, high: 0.2}\n", 4, "regularizers.l2.l1"),
    "strength that can be off": ("regularizers:\n  l2:\n    l2: {type: float, low: 0, high: 0.2}\n",
                                 3, "regularizers.l2.l2"),
    "off choice": ("regularizers:\n  batch_norm:\n    batch_norm: {type: categorical, choices: [none]}\n",
                   3, "batch_norm"),
    "regularizer always on": ("params:\n  dropout: {type: float, low: 0.1, high: 0.5, default: 0.2}\n",
                              2, "params.dropout"),
    "missing default": ("params:\n  lr: {type: float, low: 0.01, high: 0.1}\n", 2, "default"),
    "bad fixed value": ("description: d\nfixed:\n  max_epochs: 0\n", 3, "fixed.max_epochs"),
    "bad choice": ("params:\n  optimizer: {type: categorical, choices: [adam, adagrad], default: adam}\n",
                   2, "adagrad"),
    "set twice": ("fixed:\n  lr: 0.1\nparams:\n  lr: {type: float, low: 0.01, high: 0.1, default: 0.05}\n",
                  4, "params.lr"),
    "duplicate key": ("params:\n  lr: {type: float, low: 0.01, high: 0.1, default: 0.05}\n"
                      "  lr: {type: float, low: 0.01, high: 0.1, default: 0.05}\n", 3, "params.lr"),
    "width without n_layers": ("params:\n  width: {type: int, low: 8, high: 16, default: 8}\n", 2, "n_layers"),
    "unknown type": ("params:\n  lr: {type: double, low: 0.01, high: 0.1, default: 0.05}\n", 2, "double"),
    "not a mapping": ("- just\n- a list\n", 1, "mapping"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_loader_errors_name_the_file_line_and_key(tmp_path: Path, case: str) -> None:
    text, line, key = ERRORS[case]
    with pytest.raises(SearchSpaceError) as info:
        SearchSpace.from_yaml(_write(tmp_path, text, "bad.yaml"))
    message = str(info.value)
    assert message.startswith("search space 'bad.yaml'"), message
    assert f"line {line}:" in message and info.value.line == line, message
    assert key in message, message


def test_dropout_error_says_what_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match=r"dropout=1.2 must be in \[0, 1\)"):
        SearchSpace.from_yaml(_write(tmp_path, ERRORS["dropout high >= 1"][0]))


def test_typo_gets_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match="did you mean 'high'"):
        SearchSpace.from_yaml(_write(tmp_path, ERRORS["typo'd param key"][0]))


def test_unknown_space_name_lists_the_available_ones() -> None:
    with pytest.raises(SearchSpaceError) as info:
        SearchSpace.from_yaml("defualt")
    assert "'defualt'" in str(info.value) and "did you mean 'default'" in str(info.value)
    assert all(name in str(info.value) for name in REQUIRED)


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match="no such file"):
        SearchSpace.from_yaml(tmp_path / "nope.yaml")
    with pytest.raises(SearchSpaceError, match="empty"):
        SearchSpace.from_yaml(_write(tmp_path, "# nothing\n"))


def test_python_tags_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match="line 1"):
        SearchSpace.from_yaml(_write(tmp_path, "description: !!python/object/apply:os.getcwd []\n"))


def test_error_survives_pickling(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError) as info:
        SearchSpace.from_yaml(_write(tmp_path, ERRORS["typo'd param key"][0]))
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value) and again.line == 5


# ---------------------------------------------------------------- value objects


def test_params_validate_themselves() -> None:
    with pytest.raises(SearchSpaceError, match="low=2.0 must be <= high=1.0"):
        FloatParam("lr", 2.0, 1.0)
    with pytest.raises(SearchSpaceError, match="log=true needs low > 0"):
        FloatParam("l2", 0.0, 1.0, log=True)
    with pytest.raises(SearchSpaceError, match="log=true needs low > 0"):
        IntParam("width", 0, 8, log=True)
    with pytest.raises(SearchSpaceError, match="must be an integer"):
        IntParam("width", 1.5, 8)
    with pytest.raises(SearchSpaceError, match="finite number"):
        FloatParam("lr", True, 1.0)
    with pytest.raises(SearchSpaceError, match="non-empty"):
        CategoricalParam("optimizer", [])
    with pytest.raises(SearchSpaceError, match="not one of"):
        CategoricalParam("optimizer", ["adam"], default="sgd")
    with pytest.raises(SearchSpaceError, match="cannot be combined"):
        FloatParam("lr", 0.1, 1.0, log=True, step=0.1)
    assert FloatParam("lr", 1, 2).low == 1.0 and isinstance(FloatParam("lr", 1, 2).low, float)
    assert CategoricalParam("batch_size", [32, 64]).choices == (32, 64)


def test_params_suggest_through_the_trial() -> None:
    trial = FixedTrial({"lr": 0.01, "width": 32, "optimizer": "adamw"})
    assert FloatParam("lr", 1e-4, 1e-1, log=True).suggest(trial) == 0.01
    assert IntParam("width", 8, 64, step=8).suggest(trial) == 32
    assert CategoricalParam("optimizer", ("adam", "adamw")).suggest(trial) == "adamw"


def test_family_validates_its_params() -> None:
    with pytest.raises(SearchSpaceError, match="unknown regularizer family 'mixup_alpha'"):
        RegularizerFamily("mixup_alpha")
    with pytest.raises(SearchSpaceError, match="needs a 'mixup_alpha' param"):
        RegularizerFamily("mixup")
    with pytest.raises(SearchSpaceError, match="true/false switch"):
        RegularizerFamily("spectral_norm", (CategoricalParam("spectral_norm", [True]),))
    family = RegularizerFamily("mixup", [FloatParam("mixup_alpha", 0.1, 1.0)])
    assert family.switch == "mixup_alpha" and family.switch_param == "use_mixup"


# ---------------------------------------------------------------- properties

number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2.0, max_value=2.0),
    st.integers(min_value=-10, max_value=10),
)


def _lr_space(low: object, high: object, log: bool) -> str:
    spec = {"type": "float", "low": low, "high": high, "log": log, "default": low}
    return yaml.safe_dump({"params": {"lr": spec}})


def _lr_is_valid(low: object, high: object) -> bool:
    try:
        return 0 < low <= high and math.isfinite(high) and math.isfinite(high - low)
    except TypeError:
        return False


@FUZZ
@given(low=number, high=number, log=st.booleans())
def test_float_ranges_load_and_sample_inside_or_raise(tmp_path_factory: pytest.TempPathFactory,
                                                      low: float, high: float, log: bool) -> None:
    path = _write(tmp_path_factory.mktemp("lr"), _lr_space(low, high, log))
    if not _lr_is_valid(low, high):
        with pytest.raises(SearchSpaceError, match=r"line \d+: params\.lr"):
            SearchSpace.from_yaml(path)
        return
    space = SearchSpace.from_yaml(path)
    for _, config in _ask(space, 3):
        assert low <= config.lr <= high


@FUZZ
@given(low=number, high=number, log=st.booleans())
def test_rate_ranges_stay_inside_the_unit_interval(tmp_path_factory: pytest.TempPathFactory,
                                                   low: float, high: float, log: bool) -> None:
    spec = {"type": "float", "low": low, "high": high, "log": log}
    text = yaml.safe_dump({"regularizers": {"dropout": {"dropout": spec}}})
    path = _write(tmp_path_factory.mktemp("rate"), text)
    valid = 0 < low <= high < 1
    if not valid:
        with pytest.raises(SearchSpaceError, match=r"line \d+: regularizers\.dropout\.dropout"):
            SearchSpace.from_yaml(path)
        return
    space = SearchSpace.from_yaml(path)
    config = space.sample(FixedTrial({"use_dropout": True, "dropout": (low + high) / 2}))
    assert 0 < config.dropout < 1
    for trial, config in _ask(space, 4):
        assert config.dropout == trial.params.get("dropout", 0.0)
        assert config.dropout == 0.0 or low <= config.dropout <= high


FIELDS = [*RegConfig.field_names(), "n_layers", "width"]
scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(-2, 2), st.text(max_size=6),
                   st.sampled_from(["relu", "adam", "none", "image", "16-32", "before_activation"]))
bound = st.one_of(st.integers(-1, 8), st.floats(0, 1), st.sampled_from([1e-4, 0.5, 1.0, 64]), scalar)
spec = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["float", "int"]), "low": bound, "high": bound,
                           "default": bound}, optional={"log": st.booleans(), "step": bound}),
    st.fixed_dictionaries({"type": st.just("categorical"), "choices": st.lists(scalar, min_size=1, max_size=4),
                           "default": scalar}),
    st.dictionaries(st.sampled_from(["type", "low", "high", "log", "choices", "hgih"]),
                    st.one_of(scalar, st.lists(scalar, max_size=3)), max_size=4),
)
family = st.sampled_from(sorted(REGULARIZER_FAMILIES)).flatmap(lambda name: st.tuples(
    st.just(name),
    st.one_of(st.none(), st.dictionaries(st.sampled_from(REGULARIZER_FAMILIES[name]), spec, max_size=2)),
))
document = st.fixed_dictionaries({}, optional={
    "description": scalar,
    "fixed": st.dictionaries(st.sampled_from(FIELDS), st.one_of(scalar, st.lists(st.integers(0, 64), max_size=3)),
                             max_size=3),
    "params": st.dictionaries(st.sampled_from(FIELDS), spec, max_size=3),
    "regularizers": st.lists(family, max_size=5).map(dict),
})


@FUZZ
@given(data=document)
def test_any_document_loads_or_raises_search_space_error(tmp_path_factory: pytest.TempPathFactory,
                                                         data: dict) -> None:
    path = _write(tmp_path_factory.mktemp("fuzz"), yaml.safe_dump(data))
    try:
        space = SearchSpace.from_yaml(path)
    except SearchSpaceError as err:
        assert str(err).startswith("search space 'space.yaml'")
        return
    for trial, config in _ask(space, 2):
        assert space.to_config(trial.params) == config
    assert space.to_config(space.baseline_params()).active_regularizers() == []


@FUZZ
@given(text=st.lists(st.sampled_from([*"ab:-{}[]#&*!|>'\" \n\t0.1e", "params", "lr", "type", "  ", "!!float", "!!int", "<<"]),
                     max_size=40).map("".join))
def test_any_text_loads_or_raises_search_space_error(tmp_path_factory: pytest.TempPathFactory,
                                                     text: str) -> None:
    path = _write(tmp_path_factory.mktemp("text"), text)
    try:
        SearchSpace.from_yaml(path)
    except SearchSpaceError:
        pass


# ---------------------------------------------------------------- priors

PRIORS = SPACE + """\
priors:
  - {use_dropout: true, dropout: 0.15, dropout_variant: standard, use_batch_norm: true, lr: 2.0e-3}
  - {n_layers: 3, width: 64, use_spectral_norm: true}
"""


def test_priors_come_back_as_complete_trial_params(tmp_path: Path) -> None:
    space = SearchSpace.from_yaml(_write(tmp_path, PRIORS))
    first, second = space.prior_params()
    # every param and switch set, a family's params where it is on: what trial.params will hold
    assert set(second) == set(space.baseline_params()) == set(first) - {"dropout", "dropout_variant"}
    assert first == {**space.baseline_params(), "use_dropout": True, "dropout": 0.15,
                     "dropout_variant": "standard", "use_batch_norm": True, "lr": 2e-3}
    assert space.to_config(second).hidden_layer_sizes == (64, 64, 64)
    assert space.to_config(second).active_regularizers() == ["spectral_norm", "early_stopping"]
    (tmp_path / "again").mkdir()
    again = SearchSpace.from_yaml(_write(tmp_path / "again", space.to_yaml_text()))
    assert again == space and again.prior_params() == space.prior_params()


def test_priors_that_a_module_makes_the_same_are_one_trial(tmp_path: Path) -> None:
    text = SPACE + """\
priors:
  - {use_dropout: true, dropout: 0.15, dropout_variant: standard, lr: 2.0e-3}
  - {use_dropout: true, dropout: 0.15, dropout_variant: standard, use_batch_norm: true, lr: 2.0e-3}
"""
    space = SearchSpace.from_yaml(_write(tmp_path, text))
    assert len(space.prior_params()) == 2
    # a module without a batch_norm argument: the second prior is the first
    narrow = space.for_module(["batch_norm"])
    assert len(narrow.prior_params()) == 1
    assert narrow.prior_params()[0]["dropout"] == 0.15 and "use_batch_norm" not in narrow.prior_params()[0]


def test_the_default_space_ships_priors_that_differ_from_the_baseline() -> None:
    space = SearchSpace.from_yaml("default")
    priors = space.prior_params()
    assert 3 <= len(priors) <= 5
    assert all(p != space.baseline_params() for p in priors)
    assert len({tuple(sorted(p.items())) for p in priors}) == len(priors)


@pytest.mark.parametrize(("prior", "words"), [
    ("{use_dropout: true, dropuot: 0.2}", ["priors.1.dropuot", "did you mean 'dropout'"]),
    ("{use_dropout: true, dropout: 0.9}", ["priors.1.dropout", "dropout=0.9", "outside", "[0.1, 0.5]"]),
    ("{dropout: 0.2}", ["priors.1.dropout", "'dropout' is set but use_dropout is not true"]),
    ("{batch_size: 64}", ["priors.1.batch_size", "not one of [16, 32]"]),
    ("{use_batch_norm: yes please}", ["use_batch_norm='yes please' must be true or false"]),
    ("{use_dropout: true}", ["priors.1:", "'dropout' needs a value"]),
    ("[lr, 0.1]", ["priors.1:", "must be a mapping"]),
])
def test_a_bad_prior_is_refused_with_the_file_line_and_what_to_fix(tmp_path: Path, prior: str,
                                                                   words: list[str]) -> None:
    path = _write(tmp_path, SPACE + f"priors:\n  - {{lr: 0.01}}\n  - {prior}\n", "bad.yaml")
    with pytest.raises(SearchSpaceError) as info:
        SearchSpace.from_yaml(path)
    message = str(info.value)
    assert message.startswith("search space 'bad.yaml'") and info.value.line == SPACE.count("\n") + 3, message
    for word in words:
        assert word in message


# --- a user module's own parameters (the ``module:`` section) ---------------------------------

MODULE_SPACE = """\
fixed: {max_epochs: 5}
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true, default: 3.0e-3}
  n_layers: {type: int, low: 1, high: 3, default: 2}
  width: {type: int, low: 16, high: 64, default: 32}
module:
  width: {type: int, low: 16, high: 256, log: true, default: 64}
  depth: {type: categorical, choices: [1, 2, 3], default: 2}
regularizers:
  dropout:
    dropout: {type: float, low: 0.1, high: 0.5}
    dropout_variant: {type: categorical, choices: [standard, gaussian]}
  batch_norm:
    batch_norm: {type: categorical, choices: [before_activation]}
priors:
  - {module__width: 128, use_dropout: true, dropout: 0.2, dropout_variant: standard}
"""


def test_a_module_section_is_sampled_as_module_params_beside_the_regularizers(tmp_path: Path) -> None:
    space = SearchSpace.from_yaml(_write(tmp_path, MODULE_SPACE))
    assert [p.name for p in space.module] == ["module__width", "module__depth"]
    baseline = space.baseline_params()
    assert baseline["module__width"] == 64 and baseline["module__depth"] == 2
    assert space.prior_params()[0]["module__width"] == 128 and space.prior_params()[0]["module__depth"] == 2
    trial, config = _ask(space, 1)[0]
    assert 16 <= trial.params["module__width"] <= 256 and trial.params["module__depth"] in (1, 2, 3)
    assert config == space.to_config(trial.params)  # the module's params are not RegConfig fields
    assert space.module_params(trial.params) == {k: v for k, v in trial.params.items() if k.startswith("module__")}
    again = tmp_path / "again"
    again.mkdir()
    assert SearchSpace.from_yaml(_write(again, space.to_yaml_text())) == space
    assert space.summary()["module"] == ["width", "depth"]


@pytest.mark.parametrize(("entry", "message"), [
    ("  width: {type: int, low: 16, high: 64}", "line 2: module.width: needs a 'default'"),
    ("  2x: {type: int, low: 16, high: 64, default: 32}", "module.2x: '2x' must be the name of an argument"),
    ("  width: 64", "module.width: 64 must be a mapping"),
])
def test_a_bad_module_entry_names_its_line(tmp_path: Path, entry: str, message: str) -> None:
    text = f"module:\n{entry}\nparams:\n  lr: {{type: float, low: 0.001, high: 0.01, default: 0.005}}\n"
    with pytest.raises(SearchSpaceError, match=message):
        SearchSpace.from_yaml(_write(tmp_path, text))


def test_for_module_leaves_out_what_a_module_cannot_take(tmp_path: Path) -> None:
    space = SearchSpace.from_yaml(_write(tmp_path, MODULE_SPACE))
    trimmed = space.for_module(["hidden_layer_sizes", "dropout_variant", "batch_norm"])
    assert trimmed.families() == ["dropout"]
    assert [p.name for p in trimmed.regularizers[0].params] == ["dropout"]
    assert [p.name for p in trimmed.params] == ["lr"]  # n_layers and width build hidden_layer_sizes
    assert "dropout_variant" not in trimmed.prior_params()[0]
    assert [p.name for p in trimmed.module] == ["module__width", "module__depth"]
    assert space.for_module(["dropout"]).families() == ["batch_norm"]
