"""`tssm publish`: a finished config's results copied into the repository, never a partial one."""

import json
import os

import pytest

from tssm.cli import main


def _finished(folder):
    (folder / "figures").mkdir(parents=True)
    (folder / "summary.md").write_text("# summary\n| adam | 0.973 |\n")
    (folder / "summary.csv").write_text("method,final_test_acc\nadam,0.973\n")
    (folder / "figures" / "figure1_train_acc.png").write_bytes(b"\x89PNG fake")
    (folder / "figures" / "figure1_train_acc.pdf").write_bytes(b"%PDF fake")
    (folder / "runs").mkdir()
    return folder


def test_publish_copies_summary_and_png_figures_with_a_manifest(tmp_path, capsys):
    src = _finished(tmp_path / "results" / "default")
    dest = tmp_path / "docs" / "results" / "default"
    (dest / "stale.png").parent.mkdir(parents=True)
    (dest / "stale.png").write_bytes(b"old")  # a previous publish's file that no longer exists
    assert main(["publish", str(src), "--to", str(dest)]) == 0
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == [
        "MANIFEST.json", "figure1_train_acc.png", "summary.csv", "summary.md"]
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {"summary.md", "summary.csv", "figures/figure1_train_acc.png"}
    assert (dest / "summary.md").read_text() == (src / "summary.md").read_text()


def test_publish_defaults_to_docs_results_of_the_config_name(tmp_path, monkeypatch):
    src = _finished(tmp_path / "results" / "verdict")
    monkeypatch.chdir(tmp_path)
    assert main(["publish", "results/verdict"]) == 0
    assert (tmp_path / "docs" / "results" / "verdict" / "summary.md").is_file()


@pytest.mark.parametrize("damage,message", [
    (lambda f: os.remove(f / "summary.md"), "summary.md is missing or empty"),
    (lambda f: (f / "summary.csv").write_text(""), "summary.csv is missing or empty"),
    (lambda f: os.remove(f / "figures" / "figure1_train_acc.png"), "holds no PNG figure"),
])
def test_publish_refuses_an_unfinished_folder_in_one_line(damage, message, tmp_path, capsys):
    src = _finished(tmp_path / "r")
    damage(src)
    dest = tmp_path / "out"
    assert main(["publish", str(src), "--to", str(dest)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not dest.exists()


def test_publish_of_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["publish", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err
