"""engine/files.py: a folder is published whole, and a damaged JSON file reads as absent."""

from __future__ import annotations

from pathlib import Path

from engine.files import read_json_object, replace_dir


def test_read_json_object_is_none_for_anything_but_an_object(tmp_path: Path) -> None:
    path = tmp_path / "info.json"
    assert read_json_object(path) is None  # missing
    path.write_text('{"step": 3', encoding="utf-8")  # half-written
    assert read_json_object(path) is None
    path.write_text("[1, 2]", encoding="utf-8")  # JSON, but not an object
    assert read_json_object(path) is None
    path.write_text('{"step": 3}', encoding="utf-8")
    assert read_json_object(path) == {"step": 3}


def test_replace_dir_publishes_the_new_folder_and_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old", encoding="utf-8")
    tmp = tmp_path / ".model.tmp"
    tmp.mkdir()
    (tmp / "new.txt").write_text("new", encoding="utf-8")
    replace_dir(tmp, out)
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no tmp, no .old left
    fresh = tmp_path / ".fresh.tmp"
    fresh.mkdir()
    replace_dir(fresh, tmp_path / "first")  # nothing to replace yet
    assert (tmp_path / "first").is_dir() and not fresh.exists()
