"""The embedded default: ``library`` renders a SoccerNet-like library (real videos, Labels-ball.json, splits) from
its rooms ``match`` (what happens), ``draw`` (the frames), ``encode`` (H.264) and ``labels`` (names, splits,
annotations); ``demo`` runs the numbered scripts on it (``make demo``)."""
