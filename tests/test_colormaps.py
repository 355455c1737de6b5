"""Colour maps equal the official tables; label_to_color_image and overlay."""

import numpy as np
import pytest

from deeplab.evaluation import colormaps


def test_pascal_colormap_matches_official_palette():
    cmap = colormaps.create_pascal_label_colormap()
    assert cmap.shape == (512, 3) and cmap.dtype == np.uint8
    np.testing.assert_array_equal(cmap[:4], [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]])
    np.testing.assert_array_equal(cmap[15], [192, 128, 128])  # person
    np.testing.assert_array_equal(cmap[20], [0, 64, 128])  # tvmonitor
    np.testing.assert_array_equal(cmap[255], [224, 224, 192])  # VOC border
    assert len({tuple(c) for c in cmap[:256]}) == 256


def test_cityscapes_colormap():
    cmap = colormaps.create_cityscapes_label_colormap()
    assert cmap.shape == (256, 3)
    np.testing.assert_array_equal(cmap[0], [128, 64, 128])
    np.testing.assert_array_equal(cmap[10], [70, 130, 180])
    np.testing.assert_array_equal(cmap[18], [119, 11, 32])
    assert not cmap[19:].any()


def test_ade20k_colormap():
    cmap = colormaps.create_ade20k_label_colormap()
    assert cmap.shape == (151, 3)
    np.testing.assert_array_equal(cmap[0], [0, 0, 0])
    np.testing.assert_array_equal(cmap[1], [120, 120, 120])
    np.testing.assert_array_equal(cmap[150], [92, 0, 255])


def test_get_colormap_by_name():
    np.testing.assert_array_equal(
        colormaps.get_colormap("pascal_voc_seg"), colormaps.create_pascal_label_colormap()
    )
    assert colormaps.get_colormap("ade20k").shape == (151, 3)
    assert colormaps.get_colormap("synthetic").shape == (256, 3)


def test_label_to_color_image():
    label = np.array([[0, 1], [15, 255]])
    color = colormaps.label_to_color_image(label, "pascal_voc_seg")
    assert color.shape == (2, 2, 3) and color.dtype == np.uint8
    np.testing.assert_array_equal(color[1, 0], [192, 128, 128])
    np.testing.assert_array_equal(
        colormaps.label_to_color_image(label[..., None], "pascal_voc_seg"), color
    )
    custom = colormaps.label_to_color_image(np.array([[1]]), np.array([[0, 0, 0], [9, 8, 7]]))
    np.testing.assert_array_equal(custom[0, 0], [9, 8, 7])


@pytest.mark.parametrize(
    "label", [np.array([[151]]), np.array([[-1]]), np.zeros((2, 2, 2), np.int32)]
)
def test_label_to_color_image_rejects_bad_labels(label):
    with pytest.raises(ValueError):
        colormaps.label_to_color_image(label, "ade20k")


def test_overlay():
    image = np.full((2, 2, 3), 100, np.uint8)
    color = np.full((2, 2, 3), 200, np.uint8)
    np.testing.assert_array_equal(colormaps.overlay(image, color, 0.5), 150)
    np.testing.assert_array_equal(colormaps.overlay(image, color, 0.0), 100)
    with pytest.raises(ValueError):
        colormaps.overlay(image, color, 1.5)
    with pytest.raises(ValueError):
        colormaps.overlay(image, color[:1], 0.5)
