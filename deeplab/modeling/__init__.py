"""The DeepLab model: options (one declaration per option), layers in the official slim layout,
backbones, ASPP / decoder heads, the dense prediction cell, `build_deeplab`, multi-scale
inference and the model summary."""
