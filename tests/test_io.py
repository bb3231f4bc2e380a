"""util/io.py: JSON round trips and atomic writes."""

import gzip
import json
import os

import pytest

from util.io import DataError, atomic_open, load_json, load_text_lines, store_json


@pytest.mark.parametrize("name", ["a.json", "a.json.gz"])
def test_json_round_trip(tmp_path, name):
    obj = {"video": "league/season/game", "fps": 25.0, "events": [{"frame": 3, "label": "PASS"}]}
    path = tmp_path / "sub" / name
    store_json(path, obj)
    assert load_json(path) == obj
    if name.endswith(".gz"):
        with gzip.open(path, "rt") as f:
            assert json.load(f) == obj


def test_gz_is_deterministic(tmp_path):
    store_json(tmp_path / "a.json.gz", {"x": 1})
    store_json(tmp_path / "b.json.gz", {"x": 1})
    assert (tmp_path / "a.json.gz").read_bytes() == (tmp_path / "b.json.gz").read_bytes()


def test_crash_mid_write_keeps_old_file(tmp_path):
    path = tmp_path / "results.json"
    store_json(path, {"old": True})
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write('{"new": tr')  # half-written...
        raise RuntimeError("killed")  # ...then the process dies
    assert load_json(path) == {"old": True}
    assert os.listdir(tmp_path) == ["results.json"], "the temporary file must be cleaned up"


def test_unserialisable_object_leaves_no_file(tmp_path):
    path = tmp_path / "x.json"
    with pytest.raises(TypeError):
        store_json(path, {"bad": object()})
    assert not path.exists() and os.listdir(tmp_path) == []


def test_malformed_json_names_the_file(tmp_path):
    path = tmp_path / "Labels-ball.json"
    path.write_text('{"annotations": [')
    with pytest.raises(DataError, match="Labels-ball.json.*malformed JSON"):
        load_json(path)
    with pytest.raises(DataError, match="not found"):
        load_json(tmp_path / "missing.json")


def test_load_text_lines(tmp_path):
    (tmp_path / "class.txt").write_text("PASS\n\nDRIVE \n")
    assert load_text_lines(tmp_path / "class.txt") == ["PASS", "DRIVE"]


def test_atomic_write_gets_ordinary_permissions(tmp_path):
    store_json(tmp_path / "a.json", {})
    (tmp_path / "b.json").write_text("{}")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == (tmp_path / "b.json").stat().st_mode & 0o777
