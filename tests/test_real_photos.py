"""The real-photos benchmark's bookkeeping: the identity split and the paired comparison the shipping rule reads
(the photos themselves never reach the tests; these are synthetic labels and predictions)."""

import numpy as np

from benchmarks import real_photos

STEADY_KEY = f"mean_class_accuracy_{real_photos.STEADY}plus"


def _labels(n_per_class: dict[int, int], people: int) -> tuple[np.ndarray, list[str]]:
    truth = np.concatenate([np.full(n, k) for k, n in n_per_class.items()])
    return truth, [f"person{i % people}" for i in range(len(truth))]


def test_halves_split_by_identity_and_cover_every_photo(tmp_path):
    rows = [f"images/{i}.jpg,person{i % 37},happy" for i in range(200)]
    (tmp_path / "labels.csv").write_text("path,identity,label7\n" + "\n".join(rows) + "\n")
    tune, check = real_photos.load(tmp_path, "tune"), real_photos.load(tmp_path, "check")
    assert len(tune) + len(check) == len(real_photos.load(tmp_path, "all")) == 200
    assert tune and check and not {p for _, _, p in tune} & {p for _, _, p in check}


def test_headline_counts_a_missing_face_as_wrong_and_steady_skips_small_classes():
    truth = np.array([0] * 40 + [1] * 5)
    pred = np.array([0] * 30 + [-1] * 10 + [1] * 5)
    h = real_photos.headline(truth, pred)
    assert h["accuracy"] == 35 / 45
    assert h["mean_class_accuracy"] == (0.75 + 1.0) / 2
    assert h[STEADY_KEY] == 0.75  # class 1 has fewer than STEADY photos
    assert real_photos.score(truth, pred, ["angry", "sad"])["face_found"] == 35 / 45


def test_identical_predictions_differ_by_nothing():
    truth, people = _labels({0: 60, 1: 60}, people=30)
    pred = np.where(np.arange(len(truth)) % 3 == 0, 1 - truth, truth)
    diff = real_photos.paired_difference(truth, pred, pred.copy(), people, draws=200)
    assert all(v == [0.0, 0.0, 0.0] for v in diff.values())


def test_a_gain_spread_over_many_people_is_outside_the_noise():
    truth, people = _labels({0: 60, 1: 60}, people=60)
    base = truth.copy()
    base[60:90] = 0  # half of class 1 wrong
    diff = real_photos.paired_difference(truth, base, truth.copy(), people, draws=300)
    point, low, high = diff[STEADY_KEY]
    assert point == 0.25 and 0 < low <= point <= high


def test_a_gain_from_one_person_is_within_the_noise():
    """Resampling people, not photos: a gain that lives on one person's photos can vanish from a draw."""
    truth, people = _labels({0: 60, 1: 60}, people=40)
    base, other = truth.copy(), truth.copy()
    mine = [i for i, p in enumerate(people) if p == "person7"]
    base[mine] = 1 - truth[mine]
    point, low, _ = real_photos.paired_difference(truth, base, other, people, draws=300)["accuracy"]
    assert point > 0 and low == 0.0
