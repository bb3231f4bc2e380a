"""The embedded default: ``library`` renders a SoccerNet-like library (real videos, Labels-ball.json, splits),
``demo`` runs the numbered scripts on it (``make demo``)."""
