"""Utilities with no torch model code: I/O, video, SoccerNet formats, scoring, visualisation."""
