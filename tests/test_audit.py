from __future__ import annotations

import itertools

import imagehash
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import save_image, synthetic_xray
from xrayutils import audit


def test_hamming_distances_match_a_slow_reference():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2, size=(7, 64)).astype(bool)
    fast = audit.hamming_distances(hashes)
    for i, j in itertools.product(range(7), repeat=2):
        assert fast[i, j] == np.count_nonzero(hashes[i] != hashes[j])


def test_near_duplicate_pairs_by_hand():
    hashes = np.array([[0, 0, 0, 0], [0, 0, 0, 1], [1, 1, 1, 1], [1, 1, 1, 1]], dtype=bool)
    assert audit.near_duplicate_pairs(hashes, max_distance=0).tolist() == [[2, 3, 0]]
    assert audit.near_duplicate_pairs(hashes, max_distance=1).tolist() == [[2, 3, 0], [0, 1, 1]]
    assert audit.near_duplicate_pairs(hashes[:1], max_distance=3).shape == (0, 3)
    with pytest.raises(ValueError, match="max_distance"):
        audit.near_duplicate_pairs(hashes, max_distance=-1)


def test_rescaled_stretched_copy_is_a_near_duplicate_and_others_are_not(tmp_path):
    original = save_image(tmp_path / "a.jpeg", synthetic_xray(1, size=(120, 150)))
    stretched = tmp_path / "b.jpeg"
    Image.open(original).resize((64, 64)).convert("RGB").save(stretched, quality=70)
    other = save_image(tmp_path / "c.jpeg", synthetic_xray(2, size=(120, 150)))
    hashes = audit.perceptual_hashes([str(original), str(stretched), str(other)])
    distances = audit.hamming_distances(hashes)
    assert distances[0, 1] <= 2
    assert distances[0, 2] > 10


def test_report_flags_train_test_leaks_and_label_conflicts():
    metadata = pd.DataFrame(
        {
            "dataset": ["d", "d", "d", "e"],
            "file": ["a", "b", "c", "d"],
            "path": ["a", "b", "c", "d"],
            "split": ["train", "test", "test", "train"],
            "class_name": ["covid", "covid", "normal", "normal"],
        }
    )
    hashes = np.array([[0, 0], [0, 0], [1, 1], [1, 1]], dtype=bool)
    report = audit.duplicate_report(metadata, hashes, max_distance=0)
    assert report[["file_a", "file_b", "scope", "label_conflict"]].values.tolist() == [
        ["a", "b", "train-test", False],
        ["c", "d", "cross-dataset train-test", False],
    ]
    summary = audit.summarise_duplicates(report)
    assert summary.loc["train-test", "pairs"] == 1


def test_image_properties_read_size_and_mode(tmp_path):
    path = save_image(tmp_path / "x.png", synthetic_xray(0, size=(30, 40)), "RGBA")
    props = audit.image_properties([str(path)])
    assert props.loc[0, ["width", "height", "mode", "format"]].tolist() == [40, 30, "RGBA", "PNG"]


def test_intensity_histograms_are_normalised_even_for_16_bit(tmp_path):
    paths = [str(save_image(tmp_path / f"{m}.png", synthetic_xray(0), m)) for m in ("L", "I;16")]
    hist = audit.intensity_histograms(paths, bins=8)
    assert hist.shape == (2, 8)
    assert np.allclose(hist.sum(axis=1), 1.0)
    assert np.abs(hist[0] - hist[1]).sum() < 0.1  # the same picture at 8 and 16 bits


def test_a_16_bit_copy_has_the_hash_of_its_8_bit_original(tmp_path):
    paths = [str(save_image(tmp_path / f"{m.replace(';', '')}.png", synthetic_xray(3), m)) for m in ("L", "I;16")]
    hashes = audit.perceptual_hashes(paths)
    assert audit.hamming_distances(hashes)[0, 1] == 0  # Pillow's own conversion would clip the copy to white


def test_histograms_and_hashes_see_an_8_bit_file_exactly_as_pillow_decodes_it(tmp_path):
    path = str(save_image(tmp_path / "x.png", synthetic_xray(4, size=(50, 70)), "RGBA"))
    with Image.open(path) as image:
        gray = image.convert("L")
        expected_hash = imagehash.phash(gray).hash.ravel()
        expected_gray = np.asarray(gray.resize((32, 32), Image.BILINEAR), dtype=np.float64) / 255.0
    assert np.array_equal(audit.perceptual_hashes([path])[0], expected_hash)
    expected = np.histogram(expected_gray, bins=np.linspace(0, 1, 17))[0] / expected_gray.size
    assert np.array_equal(audit.intensity_histograms([path], bins=16, size=32)[0], expected)


def test_near_duplicate_files_by_dataset_split_and_partner():
    pairs = pd.DataFrame(
        [
            ["covid-xray", "all/test/covid/a.jpeg", "test", "covid-xray", "all/train/covid/b.jpeg", "train"],
            ["covid-xray", "all/train/normal/c.jpeg", "train", "covid-xray", "all/test/normal/d.jpeg", "test"],
            ["covid-xray", "all/test/normal/e.jpeg", "test", "coronahack", "x/train/f.jpeg", "train"],
            ["coronahack", "x/test/g.jpeg", "test", "covid-xray", "all/train/normal/h.jpeg", "train"],
        ],
        columns=["dataset_a", "file_a", "split_a", "dataset_b", "file_b", "split_b"],
    )
    own = {("covid-xray", "train"), ("covid-xray", "test")}
    # pairs in either order count; a duplicate in another dataset's training split does not
    assert audit.near_duplicate_files(pairs, dataset="covid-xray", split="test", partners=own) == {"a.jpeg", "d.jpeg"}
    assert audit.near_duplicate_files(pairs, dataset="coronahack", split="test", partners={("covid-xray", "train")}) == {"g.jpeg"}


def test_two_datasets_naming_one_image_by_its_stem_is_the_same_image_not_a_leak():
    metadata = pd.DataFrame({"dataset": ["covid-xray", "covid-chestxray-dataset", "covid-xray"],
                             "file": ["all/train/covid/nejm-f1.jpeg", "images/nejm-f1.png", "all/test/covid/other.jpeg"],
                             "path": ["a", "b", "c"], "split": ["train", "test", "test"], "class_name": ["covid", "covid", "covid"]})
    hashes = np.zeros((3, 4), dtype=bool)
    report = audit.duplicate_report(metadata, hashes, max_distance=0)
    scopes = dict(zip(zip(report["file_a"], report["file_b"]), report["scope"]))
    assert scopes[("all/train/covid/nejm-f1.jpeg", "images/nejm-f1.png")] == audit.SAME_IMAGE
    assert scopes[("all/train/covid/nejm-f1.jpeg", "all/test/covid/other.jpeg")] == "train-test"
    assert scopes[("images/nejm-f1.png", "all/test/covid/other.jpeg")] == "cross-dataset test"


def test_patients_in_both_splits_and_who_they_are():
    metadata = pd.DataFrame({
        "dataset": ["d"] * 5, "split": ["train", "train", "test", "test", "test"],
        "class_name": ["covid", "normal", "covid", "covid", "normal"],
        "patient_id": ["p1", "k1", "p1", "p2", "k2"], "age": [50.0, np.nan, 50.0, np.nan, np.nan], "sex": ["F", None, "F", "M", None]})
    both = audit.patients_in_both_splits(metadata)
    assert both.to_dict("records") == [{"dataset": "d", "class": "covid", "test images": 2, "of a patient seen in training": 1},
                                       {"dataset": "d", "class": "normal", "test images": 1, "of a patient seen in training": 0}]
    groups = {"covid": metadata[metadata["class_name"] == "covid"], "children": metadata[metadata["class_name"] == "normal"]}
    who = audit.who_they_are(groups, {"Kermany et al.": (1.0, 5.0)})
    columns = ["images", "patients", "age, years", "no age", "female", "male"]
    assert who.loc["covid", columns].tolist() == [3, 2, "50-50, median 50", 1, 2, 1]
    assert who.loc["children", "age, years"] == "1-5 (Kermany et al.)" and who.loc["children", "sex unknown"] == 2


@pytest.mark.parametrize("max_distance", [0, 1, 4, 9])
def test_near_duplicate_pairs_match_the_full_distance_matrix(max_distance):
    # Random hashes with planted near-copies (a few bits flipped) and many alike: the blockwise search must find
    # exactly the pairs the full n x n matrix finds.
    rng = np.random.default_rng(max_distance)
    base = rng.random((300, 64)) < 0.5
    alike = base[:40] ^ (rng.random((40, 64)) < 0.03)
    hashes = np.vstack([base, alike, np.repeat(base[:1], 5, axis=0)])
    full = audit.hamming_distances(hashes)
    i, j = np.triu_indices(len(hashes), k=1)
    expected = sorted((a, b, full[a, b]) for a, b in zip(i, j) if full[a, b] <= max_distance)
    found = audit.near_duplicate_pairs(hashes, max_distance=max_distance, chunk=64)
    assert sorted(map(tuple, found.tolist())) == [tuple(map(int, e)) for e in expected]
    assert len(found) > 0
