"""--dataset=synthetic builds only into a new, empty or synthetic folder of ours."""

import json
import os

import pytest

from deeplab.data import synthetic, tfrecord

SMALL = dict(num_train=2, num_val=1, num_shards=1, min_size=40, max_size=48)


def _contents(folder):
    return {
        name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))
    }


def test_missing_and_empty_folders_are_built_with_a_marker(tmp_path):
    for folder in (tmp_path / "new" / "nested", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        paths = synthetic.ensure_synthetic_dataset(str(folder), **SMALL)
        assert [os.path.basename(p) for p in paths] == [
            "train-00000-of-00001.tfrecord",
            "val-00000-of-00001.tfrecord",
        ]
        with open(folder / synthetic.MARKER_FILE) as f:
            assert json.load(f)["complete"] is True
    # Built once: a second call reuses the files as they are.
    before = _contents(tmp_path / "empty")
    synthetic.ensure_synthetic_dataset(str(tmp_path / "empty"), **SMALL)
    assert _contents(tmp_path / "empty") == before


def test_a_users_shards_survive_and_the_build_is_refused(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    shard = user / "train-00000-of-00001.tfrecord"
    example = synthetic.encode_example(*synthetic.generate_example(1, "train", 0), "2007_000032")
    tfrecord.write_shards([example], str(user), "train", 1)
    before = _contents(user)
    with pytest.raises(synthetic.NotASyntheticDirError) as err:
        synthetic.ensure_synthetic_dataset(str(user), **SMALL)
    message = str(err.value)
    assert str(user) in message and "\n" not in message
    assert _contents(user) == before and shard.exists()


def test_an_images_and_labels_folder_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    with pytest.raises(synthetic.NotASyntheticDirError, match=str(tmp_path)):
        synthetic.ensure_synthetic_dataset(str(tmp_path), **SMALL)
    assert sorted(os.listdir(tmp_path)) == ["images", "labels"]


def test_an_unfinished_build_of_ours_is_redone_and_an_old_one_is_recognized(tmp_path):
    synthetic.build_synthetic_dataset(str(tmp_path), **SMALL)
    built = _contents(tmp_path)
    # Killed mid-build: the marker says unfinished and a shard is missing.
    os.remove(tmp_path / "val-00000-of-00001.tfrecord")
    with open(tmp_path / synthetic.MARKER_FILE, "w") as f:
        json.dump({"complete": False}, f)
    synthetic.ensure_synthetic_dataset(str(tmp_path), **SMALL)
    assert _contents(tmp_path) == built
    # A set written before the marker existed (same shard names and example names).
    os.remove(tmp_path / synthetic.MARKER_FILE)
    synthetic.ensure_synthetic_dataset(str(tmp_path), **SMALL)
    assert (tmp_path / synthetic.MARKER_FILE).exists()


def test_the_builder_refuses_a_users_official_shards_and_rebuilds_only_its_own(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    example = synthetic.encode_example(*synthetic.generate_example(1, "train", 0), "2007_000032")
    tfrecord.write_shards([example], str(user), "train", 4)  # train-00000-of-00004, official
    before = _contents(user)
    with pytest.raises(synthetic.NotASyntheticDirError, match="--output_dir="):
        synthetic.ensure_synthetic_dataset(str(user), rebuild=True, flag="--output_dir", **SMALL)
    assert _contents(user) == before
    # A rebuild of our own folder with other settings replaces the files it wrote.
    ours = tmp_path / "ours"
    synthetic.ensure_synthetic_dataset(str(ours), rebuild=True, **dict(SMALL, num_shards=2))
    synthetic.ensure_synthetic_dataset(str(ours), rebuild=True, **dict(SMALL, seed=3))
    assert sorted(os.listdir(ours)) == [
        synthetic.MARKER_FILE,
        "train-00000-of-00001.tfrecord",
        "val-00000-of-00001.tfrecord",
    ]
    with open(ours / synthetic.MARKER_FILE) as f:
        marker = json.load(f)
    assert marker["seed"] == 3 and marker["files"] == sorted(os.listdir(ours))[1:]


def test_a_marked_folder_never_adopts_a_file_it_did_not_write(tmp_path):
    synthetic.build_synthetic_dataset(str(tmp_path), **SMALL)
    (tmp_path / "README").write_text("not read as a shard: fine")
    stranger = tmp_path / "train-mydata-00000.tfrecord"
    stranger.write_bytes(b"the user's records")
    for rebuild in (False, True):
        with pytest.raises(synthetic.NotASyntheticDirError, match=str(stranger)):
            synthetic.ensure_synthetic_dataset(str(tmp_path), rebuild=rebuild, **SMALL)
    assert stranger.read_bytes() == b"the user's records"
    stranger.unlink()
    assert len(synthetic.ensure_synthetic_dataset(str(tmp_path), **SMALL)) == 2  # README stays
