"""Prepare the real FER2013 image tree when ../shared/data holds it (skipped otherwise)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.data, pytest.mark.slow]


def test_real_fer2013_counts(real_fer_prepared):
    from feredge.data.store import read_meta

    meta = read_meta(real_fer_prepared)
    assert meta["splits"]["train"]["count"] == 28709
    assert meta["splits"]["val"]["count"] == 3589
    assert meta["splits"]["train"]["class_counts"] == [3995, 436, 4097, 7215, 4830, 3171, 4965]
    soft = np.load(real_fer_prepared / "train" / "soft.npy")
    np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-5)
