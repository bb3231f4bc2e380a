"""Metrics: ``spotting`` (SoccerNet mAP and Team mAP, equal to the official evaluator), ``frame`` (E2E-Spot's
frame mAP), ``results`` (the toolkit's formats in, tables out)."""
