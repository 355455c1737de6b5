"""Command-line builders that write official-format DeepLab TFRecords."""
