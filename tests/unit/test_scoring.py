import numpy as np

from mlscale.production.scoring import deciles


def test_deciles_rank_highest_scores_first():
    scores = np.arange(20, dtype=float)  # 0..19
    d = deciles(scores)
    assert d[19] == 1 and d[18] == 1
    assert d[0] == 10 and d[1] == 10
    assert np.bincount(d)[1:].tolist() == [2] * 10


def test_deciles_of_fewer_rows_than_ten():
    assert deciles(np.array([0.2, 0.9, 0.5])).tolist() == [7, 1, 4]
    assert deciles(np.array([])).tolist() == []
