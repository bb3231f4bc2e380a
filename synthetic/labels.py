"""The synthetic library's names, splits and labels: game folders, splits.json's games, SoccerNet annotations.

Labels: an event drawn first at video frame ``f`` gets ``position = round((f + 0.5) * 1000 / fps)`` ms, the middle
of that frame's interval, so ``int(fps * (position / 1000))`` (the official evaluator's expression) gives ``f``
back at the video's own frame rate. In a v2 library ``team`` is the acting club, "home" (the red club, named first)
or "away"; in a Ball library it is the side, "left" or "right".
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from synthetic.match import Event
from util.soccernet import game_time

LEAGUE = "synthetic_league"
SEASON = "2024-2025"
SEASON_V2 = "2015-2016"  # the v2 library's season, so its game ids never clash with the Ball library's
LABEL_FORMATS = ("ball", "v2")
CLUB_NAMES = ["Rovers", "Athletic", "United", "Wanderers", "Albion", "City", "Town", "Rangers", "County"]
SPLITS = ("train", "val", "test", "challenge")


def split_counts(games: int) -> dict[str, int]:
    """How many games go to each split, in SoccerNet-Ball's proportions (4 train, 1 val, 2 test, 2 challenge)."""
    if games <= 1:
        return {"train": games, "val": 0, "test": 0, "challenge": 0}
    test = max(1, round(games * 2 / 9))
    val = max(1, round(games / 9)) if games >= 3 else 0
    challenge = round(games * 2 / 9) if games >= 5 else 0
    return {"train": games - test - val - challenge, "val": val, "test": test, "challenge": challenge}


def game_names(games: int, seed: int, year: int = 2024) -> list[str]:
    """Game folder names, ``"2024-09-01 - Red Rovers - Blue City"`` (from September of ``year``): the red club is the
    home club (named first)."""
    rng = np.random.default_rng([seed, 7])
    names = []
    for i in range(games):
        a, b = rng.choice(len(CLUB_NAMES), size=2, replace=False)
        names.append(
            f"{year}-{9 + i // 28:02d}-{1 + i % 28:02d} - Red {CLUB_NAMES[a]} - Blue {CLUB_NAMES[b]}"
        )
    return names


def annotations(
    events: list[Event], fps: Fraction, half: int, label_format: str = "ball", left_club: str = "red"
) -> list[dict]:
    """SoccerNet annotations for one video: the position is the middle of the event's first frame (ms).

    ``team`` is the side ("left" / "right") in Ball labels and the club in v2 labels: "home" for the red club (the
    one defending the left goal when ``left_club`` is "red"), "away" for the blue one."""
    out = []
    for e in events:
        position_ms = int(round((e.frame + 0.5) * 1000 / fps))
        team = e.team
        if label_format == "v2":
            team = "home" if (e.team == "left") == (left_club == "red") else "away"
        out.append(
            {
                "gameTime": game_time(half, position_ms),
                "label": e.label,
                "position": str(position_ms),
                "team": team,
                "visibility": e.visibility,
            }
        )
    return out


def library_splits(
    games: int, seed: int = 0, counts: dict[str, int] | None = None, label_format: str = "ball"
) -> dict[str, list[str]]:
    """The games of a library of ``games`` games and ``seed``, by split (what ``splits.json`` will hold);
    ``counts`` ({split: games}, summing to ``games``) replaces SoccerNet's proportions. A v2 library's games are in
    season ``SEASON_V2``."""
    season = SEASON_V2 if label_format == "v2" else SEASON
    names = game_names(games, seed, int(season[:4]))
    counts = split_counts(games) if counts is None else {s: int(counts.get(s, 0)) for s in SPLITS}
    if sum(counts.values()) != games:
        raise ValueError(f"split counts {counts} do not add up to {games} games")
    splits, k = {}, 0
    for split in SPLITS:
        splits[split] = [f"{LEAGUE}/{season}/{n}" for n in names[k : k + counts[split]]]
        k += counts[split]
    return splits
