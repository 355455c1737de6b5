"""Named model-zoo recipes: the README table, ModelOptions.from_recipe, build_deeplab(recipe=)
and --recipe on the command lines."""

import os
import re

import pytest
from absl import flags

from deeplab import build_deeplab
from deeplab.cli import flags as cli_flags
from deeplab.modeling.options import ModelOptions
from deeplab.modeling.recipes import RECIPES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_model_zoo_rows():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Model zoo") :]
    return re.findall(r"^\| `(\w+)` \| [^|]+ \| ([\w]+) \((\d+)\) \| `([^`]+)` \|", section, re.M)


def test_readme_model_zoo_table_is_the_recipes():
    rows = _readme_model_zoo_rows()
    assert [name for name, *_ in rows] == list(RECIPES)
    for name, dataset, num_classes, model_flags in rows:
        recipe = RECIPES[name]
        assert (dataset, int(num_classes)) == (recipe.dataset, recipe.num_classes), name
        assert model_flags == recipe.as_flags(), name


def _parsed(*argv):
    values = flags.FlagValues()
    cli_flags.define_model_flags(values)
    values(["prog", *argv])
    return values


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_equals_its_flags_on_the_command_line(name):
    recipe = RECIPES[name]
    from_flags = cli_flags.model_options_from_flags(
        _parsed(*recipe.as_flags().split()), num_classes=recipe.num_classes
    )
    assert from_flags == ModelOptions.from_recipe(name)
    assert from_flags == cli_flags.model_options_from_flags(
        _parsed(f"--recipe={name}"), num_classes=recipe.num_classes
    )


def test_explicit_flags_and_arguments_override_the_recipe():
    options = cli_flags.model_options_from_flags(
        _parsed("--recipe=xception_65_pascal_os16", "--output_stride=8", "--atrous_rates=12,24,36"),
        num_classes=21,
    )
    assert options == ModelOptions.from_recipe("xception_65_pascal_os8")
    assert ModelOptions.from_recipe("mobilenet_v2_pascal_os8", num_classes=3).num_classes == 3
    with pytest.raises(ValueError, match="--recipe='nope'"):
        ModelOptions.from_recipe("nope")
    with pytest.raises(flags.IllegalFlagValueError):
        _parsed("--recipe=nope")


def test_build_deeplab_from_a_recipe():
    model = build_deeplab(
        recipe="mobilenet_v2_pascal_os16", num_classes=3, depth_multiplier=0.25, name="zoo"
    )
    assert model.name == "zoo" and model.output_shape[-1] == 3
    assert not any(layer.name.startswith("decoder") for layer in model.layers)
