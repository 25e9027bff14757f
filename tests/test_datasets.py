from __future__ import annotations

import shutil

import pytest

from xrayutils import datasets


def test_covid_xray_all_has_four_classes_in_fixed_order(data_dir):
    ds = datasets.load("covid-xray", task="all", data_dir=data_dir)
    assert ds.classes == ["covid", "normal", "pneumonia_bac", "pneumonia_vir"]
    assert ds.totals().loc["train"].tolist() == [3, 3, 3, 3]
    assert ds.totals().loc["test"].tolist() == [2, 2, 2, 2]
    assert (ds.metadata["label"] == ds.metadata["class_name"].map(ds.classes.index)).all()
    assert "covid-xray" in repr(ds) and "train: 12" in repr(ds)


def test_coronahack_labels_come_from_the_csv(data_dir):
    two = datasets.load("coronahack", task="two", data_dir=data_dir)
    assert two.classes == ["normal", "pneumonia"]
    assert two.totals().loc["train"].tolist() == [3, 6]
    every = datasets.load("coronahack", task="all", data_dir=data_dir)
    assert every.totals().loc["test"].to_dict() == {"covid": 0, "normal": 2, "pneumonia_bac": 2, "pneumonia_vir": 2}


def test_both_datasets_have_the_same_columns(data_dir):
    a = datasets.load("covid-xray", data_dir=data_dir)
    b = datasets.load("coronahack", data_dir=data_dir)
    assert list(a.metadata.columns) == list(b.metadata.columns)


def test_lateral_views_are_flagged_and_can_be_filtered(data_dir):
    ds = datasets.load("covid-xray", task="two", data_dir=data_dir)
    assert ds.metadata.loc[ds.metadata["view"] == "lateral", "file"].str.endswith("-L.jpeg").tolist() == [True]
    frontal = datasets.load("covid-xray", task="two", data_dir=data_dir, views=("frontal",))
    assert len(frontal) == len(ds) - 1


def test_corrupt_jpeg_is_named_and_skipped(data_dir):
    bad = data_dir / "covid-xray" / "two" / "train" / "normal" / "broken.jpeg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.warns(UserWarning, match="broken.jpeg"):
        ds = datasets.load("covid-xray", task="two", data_dir=data_dir)
    assert ds.skipped["file"].str.endswith("broken.jpeg").tolist() == [True]
    assert not ds.metadata["file"].str.endswith("broken.jpeg").any()
    assert ds.totals().loc["train", "normal"] == 3


def test_only_formats_the_pipeline_decodes_are_dataset_images(data_dir):
    folder = data_dir / "covid-xray" / "two" / "train" / "normal"
    for name in ("scan.tiff", "scan.webp", "notes.txt"):  # predict reads the first two, training never sees them
        (folder / name).write_bytes(b"")
    ds = datasets.load("covid-xray", task="two", data_dir=data_dir, check_images=False)
    assert not ds.metadata["file"].str.endswith((".tiff", ".webp", ".txt")).any()
    assert ds.totals().loc["train", "normal"] == 3
    assert datasets.IMAGE_SUFFIXES < datasets.READABLE_SUFFIXES


def test_missing_class_folder_names_it_and_the_layout(data_dir):
    shutil.rmtree(data_dir / "covid-xray" / "all" / "test" / "pneumonia_vir")
    with pytest.raises(datasets.DataNotFoundError, match=r"all/test/pneumonia_vir") as error:
        datasets.load("covid-xray", task="all", data_dir=data_dir)
    assert "Expected:" in str(error.value) and "pneumonia_bac" in str(error.value)
    datasets.load("covid-xray", task="two", data_dir=data_dir)  # task two does not need it


def test_empty_class_folder_is_an_error(data_dir):
    for image in (data_dir / "covid-xray" / "two" / "test" / "covid").iterdir():
        image.unlink()
    with pytest.raises(datasets.DataNotFoundError, match=r"no images in .*two/test/covid"):
        datasets.load("covid-xray", task="two", data_dir=data_dir)


def test_csv_row_without_file_is_named_and_left_out(data_dir):
    root = data_dir / "coronahack"
    victim = next((root / datasets.CORONAHACK_IMAGES / "test").iterdir())
    victim.unlink()
    with pytest.warns(UserWarning, match=victim.name):
        ds = datasets.load("coronahack", data_dir=data_dir)
    assert len(ds.subset("test")) == 5


def test_dataset_missing_from_explicit_folder_says_where_and_what(tmp_path):
    with pytest.raises(datasets.DataNotFoundError) as error:
        datasets.locate("coronahack", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "coronahack") in message and str(tmp_path / "coronahack-mini") in message
    assert "praveengovi/coronahack-chest-xraydataset" in message
    assert "Chest_xray_Corona_Metadata.csv" in message


def test_failed_download_gives_the_upstream_and_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("XRAY_DATA_DIR", raising=False)
    monkeypatch.setenv("XRAY_CACHE_DIR", str(tmp_path / "cache"))

    def offline(name, target):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "_download", offline)
    with pytest.raises(datasets.DataNotFoundError, match="no network") as error:
        datasets.locate("covid-xray")
    assert "mdshopon/COVID19_Classification" in str(error.value)
    assert "covid-xray/two/{train,test}/{covid,normal}" in str(error.value)


def test_cache_is_used_when_no_folder_is_given(data_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("XRAY_DATA_DIR", raising=False)
    monkeypatch.setenv("XRAY_CACHE_DIR", str(data_dir))
    assert datasets.locate("covid-xray", download=False) == data_dir / "covid-xray"


def test_download_is_checked_before_it_enters_the_cache(data_dir, tmp_path, monkeypatch):
    """A download with the wrong layout is refused and leaves no cache entry behind."""
    monkeypatch.setenv("XRAY_CACHE_DIR", str(tmp_path / "cache"))
    import kagglehub

    incomplete = tmp_path / "kaggle"
    shutil.copytree(data_dir / "coronahack", incomplete)
    (incomplete / "Chest_xray_Corona_Metadata.csv").unlink()
    monkeypatch.setattr(kagglehub, "dataset_download", lambda handle: str(incomplete))
    with pytest.raises(datasets.DataNotFoundError, match="missing file"):
        datasets._download("coronahack", tmp_path / "cache" / "coronahack")
    assert not (tmp_path / "cache" / "coronahack").exists()
    (incomplete / "Chest_xray_Corona_Metadata.csv").write_bytes(
        (data_dir / "coronahack" / "Chest_xray_Corona_Metadata.csv").read_bytes()
    )
    path = datasets._download("coronahack", tmp_path / "cache" / "coronahack")
    assert len(datasets.load("coronahack", root=path)) == 15


def test_subsampling_is_seeded(data_dir):
    a = datasets.load("covid-xray", task="all", data_dir=data_dir, max_images_per_class=2, seed=1)
    b = datasets.load("covid-xray", task="all", data_dir=data_dir, max_images_per_class=2, seed=1)
    assert a.totals().to_numpy().max() == 2
    assert a.metadata["file"].tolist() == b.metadata["file"].tolist()


def test_fingerprint_follows_content_not_location(data_dir, tmp_path):
    first = datasets.load("covid-xray", data_dir=data_dir).fingerprint()
    shutil.copytree(data_dir, tmp_path / "copy")
    assert datasets.load("covid-xray", data_dir=tmp_path / "copy").fingerprint() == first
    image = next((tmp_path / "copy" / "covid-xray" / "two" / "test" / "normal").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")
    assert datasets.load("covid-xray", data_dir=tmp_path / "copy").fingerprint() != first


def test_unique_patients_keeps_one_image_per_patient(data_dir):
    folder = data_dir / "covid-xray" / "all" / "train" / "pneumonia_bac"
    for i, image in enumerate(sorted(folder.iterdir())):
        image.rename(folder / f"person7_bacteria_{i}{image.suffix}")
    ds = datasets.load("covid-xray", task="all", data_dir=data_dir, unique_patients=True)
    assert ds.totals().loc["train", "pneumonia_bac"] == 1


def test_unknown_names_are_value_errors(data_dir):
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.load("chexpert", data_dir=data_dir)
    with pytest.raises(ValueError, match="task must be"):
        datasets.load("covid-xray", task="three", data_dir=data_dir)


def test_sample_per_class_takes_all_of_a_small_class(data_dir):
    frame = datasets.load("coronahack", task="all", data_dir=data_dir).metadata
    sample = datasets.sample_per_class(frame, 100, seed=0)
    assert len(sample) == len(frame)
    assert sample.groupby(["split", "class_name"]).size().max() == 3


def test_an_extra_class_folder_is_named_not_silently_ignored(data_dir):
    extra = data_dir / "covid-xray" / "two" / "train" / "pneumonia"
    extra.mkdir()
    (extra / "x.jpeg").write_bytes((data_dir / "covid-xray" / "two" / "train" / "normal").glob("*").__next__().read_bytes())
    with pytest.warns(UserWarning, match=r"folder\(s\) \['pneumonia'\] that are no class of task 'two'"):
        ds = datasets.load("covid-xray", task="two", data_dir=data_dir, check_images=False)
    assert "pneumonia" not in set(ds.metadata["class_name"])
