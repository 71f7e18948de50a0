"""Datasets as uint8 tensors in memory, and batched on-device augmentation."""
