import numpy as np
import pytest

from trainable.config import TrialConfig


def test_from_dict_coerces_numpy_scalars_to_python() -> None:
    cfg = TrialConfig.from_dict({"freeze_depth": np.int64(3), "head_lr": np.float32(0.5)})
    assert cfg.freeze_depth == 3 and type(cfg.freeze_depth) is int
    assert cfg.head_lr == 0.5 and type(cfg.head_lr) is float


def test_unknown_key_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown trial setting\(s\) 'lr'; valid: .*head_lr"):
        TrialConfig.from_dict({"lr": 0.1})


def test_fractional_integer_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"`freeze_depth` must be an integer, but got"):
        TrialConfig.from_dict({"freeze_depth": 2.5})


def test_round_trip_through_a_dict() -> None:
    cfg = TrialConfig(freeze_depth=2, backbone_lr=1e-3, head_lr=1e-2, seed=7)
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


def test_backbone_lr_may_be_absent_but_other_fields_may_not_be_none() -> None:
    assert TrialConfig.from_dict({"freeze_depth": 5, "backbone_lr": None}).backbone_lr is None
    with pytest.raises(ValueError, match=r"`head_lr` must be a float, but got head_lr=None"):
        TrialConfig.from_dict({"head_lr": None})


def test_a_flag_must_be_a_real_boolean() -> None:
    assert TrialConfig.from_dict({"augment": False}).augment is False
    with pytest.raises(ValueError, match=r"`augment` must be true or false, but got augment=1"):
        TrialConfig.from_dict({"augment": 1})
