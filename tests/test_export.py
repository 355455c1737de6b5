"""export.py: SavedModel serving (any size, encoded bytes), saved_model_cli, TFLite, and an
official TF1 checkpoint exported directly."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from deeplab import ModelOptions, build_deeplab_from_options
from deeplab.checkpoints.official import load_checkpoint
from deeplab.export import litert
from deeplab.export import saved_model as export_lib
from deeplab.modeling import inference
from tests import helpers

# Every test needs the tiny trained DeepLab run and exports it (once, in a subprocess).
# One worker runs this module (its module fixtures are built once).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("export")]


TFLITE_SIZE = (65, 65)


@pytest.fixture(scope="session")
def exported(run, tmp_path_factory):
    """export.py's SavedModel + float LiteRT model of the tiny run (the end-to-end export run),
    written once per test session."""

    def export(root):
        result = helpers.run_cli(
            "export.py",
            f"--checkpoint_path={run.run_dir}",
            f"--export_path={root / 'saved_model'}",
            "--tflite",
            "--crop_size={},{}".format(*TFLITE_SIZE),
        )
        assert result.returncode == 0, result.stderr[-3000:]

    return str(helpers.shared_once(tmp_path_factory, "export_cli", export) / "saved_model")


@pytest.fixture(scope="module")
def keras_model(run):
    """The Keras model (logits upsampled inside, global pooling) with the run's weights."""
    model = build_deeplab_from_options(run.options.replace(crop_size=None))
    load_checkpoint(model, run.run_dir)
    return model


def _saved_model_cli():
    path = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(path):
        pytest.skip(f"saved_model_cli not found next to {sys.executable}")
    return path


def _images(height, width, seed=0, batch=1):
    return np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3), np.uint8)


def test_fresh_process_serves_any_size_without_deeplab(exported, keras_model, tmp_path):
    np.save(tmp_path / "input.npy", _images(480, 640))
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        model = tf.saved_model.load({exported!r})
        serve = model.signatures["serving_default"]
        out = serve(images=tf.constant(np.load({str(tmp_path / "input.npy")!r})))
        np.save({str(tmp_path / "probabilities.npy")!r}, out["semantic_probabilities"].numpy())
        np.save({str(tmp_path / "predictions.npy")!r}, out["semantic_predictions"].numpy())
        big = np.random.default_rng(1).integers(0, 256, (1, 1025, 2049, 3), np.uint8)
        out = serve(images=tf.constant(big))
        print("big", out["semantic_predictions"].shape, out["semantic_predictions"].dtype.name,
              out["semantic_probabilities"].shape)
        print("deeplab imported:", any(m.split(".")[0] == "deeplab" for m in sys.modules))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=str(tmp_path),
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "big (1, 1025, 2049) int32 (1, 1025, 2049, 7)" in result.stdout
    assert "deeplab imported: False" in result.stdout
    predictions = np.load(tmp_path / "predictions.npy")
    probabilities = np.load(tmp_path / "probabilities.npy")
    assert predictions.shape == (1, 480, 640) and predictions.dtype == np.int32
    assert probabilities.shape == (1, 480, 640, 7) and probabilities.dtype == np.float32
    # Same as the Keras model to 1e-5.
    expected = tf.nn.softmax(
        keras_model(np.load(tmp_path / "input.npy").astype(np.float32), training=False)
    ).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_array_equal(predictions, probabilities.argmax(-1))


def test_saved_model_cli_show_lists_dynamic_signatures(exported):
    result = subprocess.run(
        [_saved_model_cli(), "show", "--dir", exported, "--all"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    assert "signature_def['serving_default']" in text
    assert "signature_def['serve_encoded']" in text
    serving = text.split("signature_def['serving_default']")[1]
    assert "inputs['images']" in serving and "DT_UINT8" in serving
    assert "shape: (-1, -1, -1, -1)" in serving and "DT_UINT8" in serving
    assert "outputs['semantic_predictions']" in serving and "shape: (-1, -1, -1)" in serving
    assert "outputs['semantic_probabilities']" in serving and "shape: (-1, -1, -1, 7)" in serving
    assert "DT_STRING" in text.split("signature_def['serve_encoded']")[1]


def test_saved_model_cli_run_gives_a_prediction(exported, tmp_path):
    """`saved_model_cli run` loads the SavedModel the TF1 / TF Serving way (variables restored
    by their graph ops) and evaluates --input_exprs (Python literals in TF 2.21)."""
    image = _images(6, 10, seed=6)
    result = subprocess.run(
        [
            _saved_model_cli(),
            "run",
            "--dir",
            exported,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--input_exprs",
            "images=" + repr(image.tolist()).replace(" ", ""),
            "--outdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    predictions = np.load(tmp_path / "semantic_predictions.npy")
    probabilities = np.load(tmp_path / "semantic_probabilities.npy")
    assert predictions.shape == (1, 6, 10) and probabilities.shape == (1, 6, 10, 7)
    loaded = tf.saved_model.load(exported)
    direct = loaded.signatures["serving_default"](images=tf.constant(image))
    np.testing.assert_array_equal(predictions, direct["semantic_predictions"].numpy())
    np.testing.assert_allclose(probabilities, direct["semantic_probabilities"].numpy(), atol=1e-6)


def test_encoded_images_of_different_sizes(exported):
    loaded = tf.saved_model.load(exported)
    first, second = _images(50, 70, seed=2)[0], _images(33, 90, seed=3)[0]
    encoded = [tf.io.encode_png(first).numpy(), tf.io.encode_jpeg(second).numpy()]
    out = loaded.signatures["serve_encoded"](encoded_images=tf.constant(encoded))
    np.testing.assert_array_equal(out["image_sizes"].numpy(), [[50, 70], [33, 90]])
    assert out["semantic_predictions"].shape == (2, 50, 90)
    serve = loaded.signatures["serving_default"]
    for i, image in enumerate([first, tf.io.decode_jpeg(encoded[1]).numpy()]):
        height, width = image.shape[:2]
        direct = serve(images=tf.constant(image[None]))
        np.testing.assert_array_equal(
            out["semantic_predictions"][i, :height, :width], direct["semantic_predictions"][0]
        )
        np.testing.assert_allclose(
            out["semantic_probabilities"][i, :height, :width],
            direct["semantic_probabilities"][0],
            atol=1e-6,
        )
    assert (out["semantic_predictions"][1, 33:].numpy() == -1).all()  # padding
    assert (out["semantic_probabilities"][1, 33:].numpy() == 0).all()
    with open(os.path.join(exported, "assets.extra", "deeplab_export.json")) as f:
        metadata = json.load(f)
    assert metadata["num_classes"] == 7 and metadata["class_names"][1] == "disc"


def test_rgba_and_gray_are_converted_other_inputs_refused(exported):
    loaded = tf.saved_model.load(exported)
    serve = loaded.signatures["serving_default"]
    rgb = _images(37, 41, seed=4)
    alpha = np.random.default_rng(5).integers(0, 256, rgb.shape[:3] + (1,), np.uint8)
    want = serve(images=tf.constant(rgb))["semantic_probabilities"].numpy()
    rgba = serve(images=tf.constant(np.concatenate([rgb, alpha], -1)))
    np.testing.assert_array_equal(rgba["semantic_probabilities"].numpy(), want)
    gray = rgb[..., :1]
    np.testing.assert_array_equal(
        serve(images=tf.constant(gray))["semantic_probabilities"].numpy(),
        serve(images=tf.constant(np.repeat(gray, 3, -1)))["semantic_probabilities"].numpy(),
    )
    encoded = tf.io.encode_png(np.concatenate([rgb, alpha], -1)[0])
    out = loaded.signatures["serve_encoded"](encoded_images=tf.stack([encoded]))
    np.testing.assert_allclose(out["semantic_probabilities"].numpy(), want, atol=1e-6)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"must have 3 \(RGB\), 4 \(RGBA\) or 1"
    ):
        serve(images=tf.constant(rgb[..., :2]))
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError), match="uint8"):
        serve(images=tf.constant(rgb.astype(np.float32)))


def test_tflite_gives_the_same_predictions(exported):
    image = _images(*TFLITE_SIZE, seed=4)
    out = litert.run(os.path.join(exported, "model.tflite"), image)
    assert out["semantic_predictions"].shape == (1,) + TFLITE_SIZE
    loaded = tf.saved_model.load(exported)
    direct = loaded.signatures["serving_default"](images=tf.constant(image))
    np.testing.assert_allclose(
        out["semantic_probabilities"], direct["semantic_probabilities"].numpy(), atol=1e-4
    )
    agree = np.mean(out["semantic_predictions"] == direct["semantic_predictions"].numpy())
    assert agree >= 0.999
    with pytest.raises(ValueError, match="shape"):
        litert.run(os.path.join(exported, "model.tflite"), _images(64, 65))


def test_tflite_signature_through_ai_edge_litert(exported):
    """The README's way: ai-edge-litert's Interpreter, the named signature, a fitted image."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=os.path.join(exported, "model.tflite"))
    assert interpreter.get_signature_list() == {
        "serving_default": {
            "inputs": ["image"],
            "outputs": ["semantic_predictions", "semantic_probabilities"],
        }
    }
    runner = interpreter.get_signature_runner("serving_default")
    assert tuple(runner.get_input_details()["image"]["shape"]) == (1,) + TFLITE_SIZE + (3,)
    image = _images(40, 90, seed=5)[0]  # wider than the input: shrunk, then padded
    fitted, (height, width) = litert.fit_image(image, TFLITE_SIZE)
    assert fitted.shape == TFLITE_SIZE + (3,) and (height, width) == (29, 65)
    assert (fitted[height:] == litert.PAD_VALUE).all()
    out = runner(image=fitted[np.newaxis])
    assert out["semantic_predictions"].dtype == np.int32
    assert out["semantic_probabilities"].shape == (1,) + TFLITE_SIZE + (7,)
    loaded = tf.saved_model.load(exported)
    direct = loaded.signatures["serving_default"](images=tf.constant(fitted[np.newaxis]))
    agree = np.mean(out["semantic_predictions"] == direct["semantic_predictions"].numpy())
    assert agree >= 0.999
    # Every op is a builtin that XNNPACK takes: no Flex (SELECT_TF_OPS) op in the graph.
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not any(name.startswith("Flex") for name in ops), ops
    # XNNPACK runs all but the uint8 -> float cast of the input and the final argmax.
    assert sorted(litert.delegation(interpreter)["not_delegated"]) == ["ARG_MAX", "CAST"]


def test_multi_scale_flipped_export_matches_the_keras_model(run, tmp_path):
    options = inference.inference_options(run.options)
    model, _ = inference.build_inference_model(options, run.checkpoint)
    stride = inference.logits_output_stride(options)
    export_lib.export_saved_model(
        model,
        str(tmp_path / "ms"),
        7,
        inference.InferenceSettings((0.75, 1.25), True, stride),
        encoded_signature=False,
    )
    images = _images(45, 61, seed=5, batch=2)
    out = tf.saved_model.load(str(tmp_path / "ms")).signatures["serving_default"](
        images=tf.constant(images)
    )
    expected = inference.predict_probabilities(
        model, images.astype(np.float32), (0.75, 1.25), True, stride
    ).numpy()
    np.testing.assert_allclose(out["semantic_probabilities"].numpy(), expected, atol=1e-5)


def test_official_checkpoint_exported_directly_gives_the_official_predictions(tmp_path):
    folder = helpers.official_fixture_dir()
    if folder is None:
        pytest.skip(
            "official fixture not found (tests/fixtures/mobilenet_v2_os8 or "
            "../shared/reference/fixtures/mobilenet_v2_os8)"
        )
    export_dir = tmp_path / "official"
    # The official export flags of this checkpoint; the class count is read from it (21).
    result = helpers.run_cli_in_process(
        "export.py",
        f"--checkpoint_path={folder}",
        f"--export_path={export_dir}",
        "--model_variant=mobilenet_v2",
        "--output_stride=8",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    images = np.load(os.path.join(folder, "input.npy"))
    out = tf.saved_model.load(str(export_dir)).signatures["serving_default"](
        images=tf.constant(images)
    )
    official_logits = tf.compat.v1.image.resize_bilinear(
        np.load(os.path.join(folder, "logits.npy")), images.shape[1:3], align_corners=True
    )
    official = tf.nn.softmax(official_logits).numpy()
    probabilities = out["semantic_probabilities"].numpy()
    assert probabilities.shape == (1, 257, 257, 21)
    assert np.abs(probabilities - official).max() < 1e-3
    agree = np.mean(out["semantic_predictions"].numpy() == official.argmax(-1))
    assert agree >= 0.999
    with open(os.path.join(folder, "flags.json")) as f:
        kwargs = json.load(f)["build_deeplab"]
    keras_model = build_deeplab_from_options(ModelOptions(**kwargs).replace(crop_size=None))
    load_checkpoint(keras_model, folder)
    expected = tf.nn.softmax(keras_model(images.astype(np.float32), training=False)).numpy()
    # The export folds BatchNorm into the convs, which reorders float32 rounding: up to 1.2e-5
    # in probability on this machine with oneDNN (far inside the official 1e-3 tolerance).
    np.testing.assert_allclose(probabilities, expected, atol=5e-5)
