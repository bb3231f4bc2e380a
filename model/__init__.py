"""The E2E-Spot network (backbones, temporal shifts, temporal heads), training and prediction."""
