"""Datasets: training clips over JPEG frames or precomputed features, batched augmentation."""
