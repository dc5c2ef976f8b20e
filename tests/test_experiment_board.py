"""The experiment's own TensorBoard file: columns always, the model graph where it traces."""

from __future__ import annotations

from pathlib import Path

import pytest
from readers import read_board

from search.tracking.tensorboard import write_experiment_board
from spaces import get_space, searched_keys
from trainable.config import TrialConfig


@pytest.mark.parametrize(("space", "drawn"), [("resnet_small", True), ("vit", False)])
def test_the_graph_is_drawn_where_it_traces_and_its_absence_explained(
    tmp_path: Path, space: str, drawn: bool
) -> None:
    config = get_space(space)
    fixed = TrialConfig(backbone=config["backbone"], image_size=32).to_dict()
    missing = write_experiment_board(tmp_path, config, searched_keys(config), fixed, 3)
    assert (missing is None) == drawn
    if not drawn:
        assert missing == "torch.jit.trace cannot follow it"
    board = read_board(tmp_path)
    assert [hp.name for hp in board.experiment.hparam_infos] == searched_keys(config)
    assert bool(board.graphs) == drawn
