"""Evaluation: the loop over an eval set, streaming metrics (mIoU), results (table, JSON,
confusion matrix, TensorBoard), visualisation and label colour maps."""
