"""Exports are atomic (old or new, whole) and serving refuses bad input with a clear error."""

import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deeplab.export import saved_model as export_lib
from deeplab.export import staging
from tests.helpers import small_model, tiny_options

# One worker runs this module (its module fixtures are built once).
pytestmark = pytest.mark.xdist_group("export_safety")

SETTINGS = os.path.join("assets.extra", export_lib.METADATA_FILENAME)


def _tree(folder):
    return {
        name: open(os.path.join(folder, name), "rb").read() for name in staging.export_files(folder)
    }


def test_a_staged_folder_replaces_the_whole_export_or_leaves_it(tmp_path):
    path = tmp_path / "export"
    with staging.staged_folder(str(path)) as folder:
        os.makedirs(os.path.join(folder, "assets.extra"))
        for name in ("saved_model.pb", "model.tflite", SETTINGS):
            with open(os.path.join(folder, name), "w") as f:
                f.write("old")
        assert not path.exists()  # nothing is visible before the block ends
    old = _tree(path)
    with pytest.raises(RuntimeError):
        with staging.staged_folder(str(path)) as folder:
            with open(os.path.join(folder, "saved_model.pb"), "w") as f:
                f.write("new")
            raise RuntimeError("killed after saved_model.pb")
    assert _tree(path) == old
    with staging.staged_folder(str(path)) as folder:
        with open(os.path.join(folder, "saved_model.pb"), "w") as f:
            f.write("new")
    assert _tree(path) == {"saved_model.pb": b"new"}  # no old model.tflite beside it
    assert os.listdir(tmp_path) == ["export"]  # no temp folder left


def test_a_users_folder_is_refused_and_a_killed_exports_leftovers_removed(tmp_path):
    user = tmp_path / "photos"
    user.mkdir()
    (user / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(staging.ExportPathError, match=f"--export_path={user} holds"):
        with staging.staged_folder(str(user)):
            pass
    assert os.listdir(user) == ["holiday.jpg"]
    dead = tmp_path / ".export.tmp-999999999-abc"  # left by a SIGKILLed export (no such pid)
    dead.mkdir()
    with staging.staged_folder(str(tmp_path / "export")):
        pass
    assert not dead.exists()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = small_model(tiny_options(num_classes=3))
    path = str(tmp_path_factory.mktemp("export") / "model")

    def add_tflite(folder, module):
        with open(os.path.join(folder, "model.tflite"), "wb") as f:
            f.write(b"a LiteRT model")

    export_lib.export_saved_model(model, path, 3, also=add_tflite)
    return model, path


def _listed_files(path):
    with open(os.path.join(path, SETTINGS)) as f:
        return json.load(f)["files"]


@pytest.mark.slow
def test_re_export_replaces_the_whole_export_and_lists_its_files(exported, tmp_path):
    model, path = exported
    assert "model.tflite" in _listed_files(path)
    assert _listed_files(path) == staging.export_files(path)
    first = _tree(path)

    def killed(folder, module):
        assert os.path.exists(os.path.join(folder, "saved_model.pb"))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_lib.export_saved_model(model, path, 3, also=killed)
    assert _tree(path) == first
    again = str(tmp_path / "again")
    export_lib.export_saved_model(model, again, 3, encoded_signature=False)
    export_lib.export_saved_model(model, again, 3, encoded_signature=False)
    assert "model.tflite" not in os.listdir(again)
    assert _listed_files(again) == staging.export_files(again)


def _png_header(height, width):
    """The first bytes of a PNG of height x width (no pixel data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


@pytest.mark.slow
def test_serving_refuses_a_wrong_rank_and_an_oversize_image(exported):
    _, path = exported
    loaded = tf.saved_model.load(path)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"rank 4\), got shape.*33 33 3"):
        loaded.signatures["serving_default"](images=tf.zeros([33, 33, 3], tf.uint8))
    huge = _png_header(20000, 20000) + b"\0" * 1000
    small = io.BytesIO()
    Image.fromarray(np.zeros((9, 11, 3), np.uint8)).save(small, format="PNG")
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"encoded_images\[.*1.*too large.*20000.*20000"
    ):
        loaded.signatures["serve_encoded"](encoded_images=tf.constant([small.getvalue(), huge]))
    out = loaded.signatures["serve_encoded"](encoded_images=tf.constant([small.getvalue()]))
    assert out["image_sizes"].numpy().tolist() == [[9, 11]]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_the_header_gives_the_image_size(fmt):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((37, 53, 3), np.uint8)).save(buffer, format=fmt)
    size = export_lib.encoded_image_size(tf.constant(buffer.getvalue()))
    assert size.numpy().tolist() == [37, 53]
    assert export_lib.encoded_image_size(tf.constant(b"not an image")).numpy().tolist() == [0, 0]


def test_noserve_encoded_is_a_saved_model_flag():
    from deeplab.export.runner import ExportConfig

    options = tiny_options()
    assert not ExportConfig("run", "exported", options, serve_encoded=False).serve_encoded
    with pytest.raises(ValueError, match="--noserve_encoded applies to the SavedModel"):
        ExportConfig("run", "frozen.pb", options, serve_encoded=False)
