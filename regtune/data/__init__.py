"""Data in: load files and built-in datasets, check them, split train/validation/test, preprocess tables."""
