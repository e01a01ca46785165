"""Training clips come from --data or $IMFCODEC_DATA, never from a path in the package."""
from imfcodec import cli
from imfcodec.train.datapath import DATA_ENV, data_paths

from conftest import REPO


def test_train_without_data_is_one_line_naming_both(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(DATA_ENV, raising=False)
    out = tmp_path / "run"
    assert cli.main(["train", "--config", str(REPO / "configs/train/tiny.yaml"), "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data" in err and DATA_ENV in err
    assert not out.exists()


def test_data_paths_given_else_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_paths(["a.mp4", tmp_path]) == ["a.mp4", str(tmp_path)]
    assert data_paths(None) == [str(tmp_path / "train")]
    assert data_paths([], "val") == [str(tmp_path / "val")]


def test_no_machine_paths_in_the_package_or_configs():
    for root in ("imfcodec", "configs"):
        for p in (REPO / root).rglob("*"):
            if p.suffix in (".py", ".yaml", ".md"):
                assert "../shared" not in p.read_text(), p
