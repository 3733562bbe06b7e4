"""Typed dataclass configs: unknown keys and bad types are errors naming the dotted key."""

from dataclasses import dataclass, field

import pytest

from gpusweep.typedconfig import ConfigError, from_dict, override


@dataclass(frozen=True)
class Train:
    lr: float = 0.01
    epochs: int = 3


@dataclass(frozen=True)
class Root:
    train: Train = field(default_factory=Train)
    name: str | None = None


def test_from_dict_fills_defaults_and_converts_lossless_numbers():
    config = from_dict(Root, {"train": {"lr": 1, "epochs": 4.0}})
    assert config == Root(Train(lr=1.0, epochs=4))


@pytest.mark.parametrize("data, key", [
    ({"train": {"lrr": 1}}, "train.lrr"),
    ({"train": {"epochs": 2.5}}, "train.epochs"),
    ({"train": {"lr": "fast"}}, "train.lr"),
    ({"nmae": "x"}, "nmae"),
])
def test_from_dict_names_the_bad_key(data, key):
    with pytest.raises(ConfigError) as info:
        from_dict(Root, data)
    assert info.value.key == key


def test_override_parses_like_yaml_and_names_nested_keys():
    assert override(Root(), "train.lr", "1e-05").train.lr == 1e-05  # str(1e-05) in ${args}
    assert override(Root(), "name", "null").name is None
    for dotted, text in (("train.lrr", "1"), ("train.epochs", "x"), ("train.lr.x", "1")):
        with pytest.raises(ConfigError) as info:
            override(Root(), dotted, text)
        assert info.value.key.startswith("train.")
    with pytest.raises(ConfigError):
        override(Root(), "train", "3")  # a section, not a value
