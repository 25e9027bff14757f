from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xrayutils import datasets
from xrayutils.sources import adults, coronahack


def test_covid_xray_all_has_four_classes_in_fixed_order(data_dir):
    ds = datasets.load("covid-xray", task="all", data_dir=data_dir)
    assert ds.classes == ["covid", "normal", "pneumonia_bac", "pneumonia_vir"]
    assert ds.totals().loc["train"].tolist() == [3, 3, 3, 3]
    assert ds.totals().loc["test"].tolist() == [2, 2, 2, 2]
    assert (ds.metadata["label"] == ds.metadata["class_name"].map(ds.classes.index)).all()
    assert "covid-xray" in repr(ds) and "train: 12" in repr(ds)
    assert str(ds).startswith("covid-xray/all: 20 images (") and "12 train" in str(ds) and "XrayDataset(" not in str(ds)


def test_coronahack_labels_come_from_the_csv(data_dir):
    two = datasets.load("coronahack", task="two", data_dir=data_dir)
    assert two.classes == ["normal", "pneumonia"]
    assert two.totals().loc["train"].tolist() == [3, 6]
    every = datasets.load("coronahack", task="all", data_dir=data_dir)
    assert every.totals().loc["test"].to_dict() == {"covid": 0, "normal": 2, "pneumonia_bac": 2, "pneumonia_vir": 2}


def test_every_dataset_has_the_same_columns(data_dir):
    for name in datasets.SOURCES:
        columns = list(datasets.load(name, data_dir=data_dir).metadata.columns)
        assert columns[:7] == ["path", "file", "split", "class_name", "label", "patient_id", "view"], name


def test_adults_are_the_frontal_rows_without_covid_labelled_from_the_metadata(data_dir):
    adults = datasets.load(datasets.ADULTS, data_dir=data_dir)
    rows = adults.metadata.set_index("file")
    assert adults.classes == ["no_finding", "pneumonia"]
    assert adults.totals().to_dict("index") == {"test": {"no_finding": 2, "pneumonia": 2}}  # no COVID-19, no lateral
    assert rows.loc["images/sars-3.jpeg", "finding"] == "SARS"  # the most specific finding of a path-style one
    assert rows.loc["images/strep-4.jpg", ["class_name", "patient_id", "age", "sex"]].tolist() == [
        "pneumonia", "covid-chestxray-dataset/4", 38.0, "M"]
    assert rows["age"].isna().tolist() == [False, True, False, False]  # an empty age is unknown, not 0
    assert adults.skipped.empty  # nofinding-2.png holds JPEG bytes and is decoded by content
    assert "images/nofinding-2.png" in rows.index


def test_an_adult_image_missing_or_named_by_no_row_is_named_and_left_out(data_dir):
    folder = data_dir / datasets.ADULTS
    (folder / "images" / "strep-4.jpg").unlink()
    shutil.copy(folder / "images" / "sars-3.jpeg", folder / "images" / "stray.jpg")
    with pytest.warns(UserWarning) as caught:
        adults = datasets.load(datasets.ADULTS, data_dir=data_dir)
    said = " ".join(str(w.message) for w in caught)
    assert "images/strep-4.jpg" in said and "images/stray.jpg" in said
    assert adults.skipped.set_index("file")["reason"].to_dict() == {
        "images/strep-4.jpg": "named in metadata.csv, but no such file",
        "images/stray.jpg": "no row of metadata.csv names it",
    }
    assert sorted(adults.metadata["file"]) == ["images/nofinding-1.jpg", "images/nofinding-2.png", "images/sars-3.jpeg"]


def test_adults_without_their_metadata_or_its_columns_say_what_is_expected(data_dir):
    folder = data_dir / datasets.ADULTS
    table = (folder / "metadata.csv").read_text()
    (folder / "metadata.csv").write_text(table.replace("finding", "diagnosis"))
    with pytest.raises(ValueError, match=r"lacks the columns \['finding'\]"):
        datasets.load(datasets.ADULTS, data_dir=data_dir)
    (folder / "metadata.csv").unlink()
    with pytest.raises(datasets.DataNotFoundError, match="missing file .*metadata.csv") as error:
        datasets.load(datasets.ADULTS, data_dir=data_dir)
    assert "images/<the file each metadata.csv row names>" in str(error.value)


def test_the_adults_download_keeps_the_metadata_and_only_the_images_it_uses(data_dir, tmp_path, monkeypatch):
    """The pinned upstream archive, unpacked by pooch, goes into the cache with the used rows' images only."""
    import pooch

    monkeypatch.setenv("XRAY_CACHE_DIR", str(tmp_path / "cache"))
    archive = tmp_path / "unpacked" / f"covid-chestxray-dataset-{adults.COMMIT}"
    shutil.copytree(data_dir / datasets.ADULTS, archive)
    asked = []

    def retrieve(url, **kwargs):
        asked.append(url)
        return [str(p) for p in archive.rglob("*") if p.is_file()]

    monkeypatch.setattr(pooch, "retrieve", retrieve)
    (archive / "images" / "ct-9.jpg").write_bytes(b"")  # an image no X-ray row names is not copied
    path = datasets.locate(datasets.ADULTS)
    assert asked == [adults.ARCHIVE] and adults.COMMIT in asked[0]
    assert path == tmp_path / "cache" / datasets.ADULTS
    assert sorted(p.name for p in (path / "images").iterdir()) == [  # every task's
        "covid-5.jpg", "covid-6.jpg", "covid-7.jpg", "nofinding-1.jpg", "nofinding-2.png", "sars-3.jpeg", "strep-4-L.jpg", "strep-4.jpg"]
    assert len(datasets.load(datasets.ADULTS, root=path)) == 4
    assert len(datasets.load(datasets.ADULTS, task="covid", root=path)) == 8


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
    victim = next((root / coronahack.IMAGES / "test").iterdir())
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
    with pytest.raises(datasets.DataNotFoundError, match="no network") as error:
        datasets.locate(datasets.ADULTS)
    assert f"ieee8023/covid-chestxray-dataset (commit {adults.COMMIT}" in str(error.value)
    assert "covid-chestxray-dataset/metadata.csv" in str(error.value)


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


def _add_collection_rows(data_dir, rows):
    """Rows for covid-xray's COVID-19 images in the collection's metadata.csv (as upstream: COVID-19 X-rays, lateral ones too)."""
    path = data_dir / datasets.ADULTS / "metadata.csv"
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    extra = pd.DataFrame(rows, columns=["patientid", "age", "sex", "finding", "view", "filename"]).assign(modality="X-ray")
    pd.concat([table, extra], ignore_index=True).to_csv(path, index=False)


def test_covid_images_take_patient_view_age_and_sex_from_the_collection_by_file_stem(data_dir):
    _add_collection_rows(data_dir, [
        ("77", "52", "F", "COVID-19", "PA", "covid-train-1.png"),  # upstream .png, covid-xray's .jpeg: the stem matches
        ("77", "52", "F", "COVID-19", "L", "covid-test-0.jpg"),  # the same patient, in test, a lateral view
        ("78", "", "M", "COVID-19", "AP", "covid-train-0-L.jpg"),  # named -L, but the metadata says AP
    ])
    ds = datasets.load("covid-xray", task="two", data_dir=data_dir, check_images=False)
    rows = ds.metadata.set_index(ds.metadata["file"].map(lambda f: Path(f).stem))
    assert rows.loc["covid-train-1", ["patient_id", "view", "projection", "age", "sex"]].tolist() == [
        f"{datasets.ADULTS}/77", "frontal", "PA", 52.0, "F"]
    assert rows.loc["covid-test-0", "view"] == "lateral" and rows.loc["covid-test-0", "patient_id"] == f"{datasets.ADULTS}/77"
    assert rows.loc["covid-train-0-L", "view"] == "frontal" and np.isnan(rows.loc["covid-train-0-L", "age"])
    # an image without a row keeps what its file name tells, and no metadata
    assert rows.loc["covid-test-1", "patient_id"] == "covid-test-1" and not rows.loc["covid-test-1", "in_collection"]
    assert rows["in_collection"].sum() == 3 and rows.loc[rows["class_name"] == "normal", "age"].isna().all()


def test_without_the_collection_file_names_tell_patient_and_view_as_before(data_dir):
    shutil.rmtree(data_dir / datasets.ADULTS)
    ds = datasets.load("covid-xray", task="two", data_dir=data_dir, check_images=False)
    assert not ds.metadata["in_collection"].any() and ds.metadata["age"].isna().all()
    lateral = ds.metadata.loc[ds.metadata["view"] == "lateral", "file"].map(lambda f: Path(f).stem).tolist()
    assert lateral == ["covid-train-0-L"]


def test_the_collection_loads_its_covid_images_for_the_within_test_and_its_others_for_the_confound_check(data_dir):
    covid = datasets.load(datasets.ADULTS, task="covid", data_dir=data_dir)
    assert covid.classes == ["covid", "other"]
    assert covid.metadata.groupby("class_name").size().to_dict() == {"covid": 3, "other": 5}  # the lateral strep-4-L is in
    assert covid.metadata.loc[covid.metadata["file"] == "images/strep-4-L.jpg", "view"].item() == "lateral"
    frontal = datasets.load(datasets.ADULTS, task="covid", data_dir=data_dir, views=("frontal",))
    assert len(frontal) == 7
    without = datasets.load(datasets.ADULTS, data_dir=data_dir)
    assert len(without) == 4 and "COVID-19" not in set(without.metadata["finding"])
    with pytest.raises(ValueError, match="task must be one of"):
        datasets.load("covid-xray", task="covid", data_dir=data_dir)


def test_coronahack_keeps_its_finding_and_counts_its_covid_images(data_dir):
    from xrayutils import audit

    path = data_dir / "coronahack" / "Chest_xray_Corona_Metadata.csv"
    table = pd.read_csv(path, index_col=0, keep_default_na=False)
    table.loc[table.index[3], "Label_2_Virus_category"] = "COVID-19"  # a TRAIN pneumonia (bacteria) row
    table.to_csv(path)
    ds = datasets.load("coronahack", task="two", data_dir=data_dir, check_images=False)
    assert set(ds.metadata["finding"]) == {"Normal", "bacteria", "Virus", "COVID-19"}
    counted = audit.covid_images(ds.metadata)
    assert counted["train"]["covid"] == 1 and counted["train"]["filed as"] == {"pneumonia": {"covid": 1, "of": 6}}
    assert counted["test"]["covid"] == 0


def test_dicom_and_other_files_in_a_class_folder_are_named_and_left_out(data_dir):
    folder = data_dir / "covid-xray" / "two" / "train" / "covid"
    (folder / "scan-1.dcm").write_bytes(b"DICM")
    (folder / "scan-2.dcm").write_bytes(b"DICM")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"")
    with pytest.warns(UserWarning) as caught:
        data = datasets.load("covid-xray", task="two", data_dir=data_dir)
    said = [str(w.message) for w in caught]
    assert any(text.startswith("2 files in the class folders of") and "a DICOM file: convert it to PNG first" in text for text in said)
    assert any("notes.txt" in text and "not an image file the pipeline reads (.txt" in text for text in said)
    assert sorted(data.skipped["file"]) == ["two/train/covid/notes.txt", "two/train/covid/scan-1.dcm", "two/train/covid/scan-2.dcm"]
    assert not data.metadata["file"].str.endswith((".dcm", ".txt")).any()


def test_a_class_folder_of_dicom_files_only_says_so(data_dir):
    folder = data_dir / "covid-xray" / "two" / "test" / "normal"
    for image in folder.iterdir():
        image.unlink()
    (folder / "scan.dcm").write_bytes(b"DICM")
    with pytest.raises(datasets.DataNotFoundError, match=r"no images in .*normal \(1 other file, such as scan.dcm: a DICOM file"):
        datasets.load("covid-xray", task="two", data_dir=data_dir)
