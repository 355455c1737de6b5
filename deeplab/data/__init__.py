"""Input data for DeepLab: dataset descriptors, readers, preprocessing, pipeline.

Entry points:
  descriptors.get_dataset_info(name) -> DatasetInfo
  pipeline.build_dataset(config.DataConfig(dataset_name, dataset_dir, split, ...))
    -> tf.data.Dataset
  preprocess.preprocess_image_and_label(...)
  synthetic.build_synthetic_dataset(...) / ensure_synthetic_dataset(...)
"""
