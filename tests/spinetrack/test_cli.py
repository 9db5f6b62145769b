import subprocess
import sys

import numpy as np
import pytest

from spinetrack.cli import main
from spinetrack.io import write_session


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "info" in out


def test_info_prints_voxel_size(tmp_path, capsys):
    path = write_session(tmp_path / "a.tif", np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8),
                         (1.0, 0.12, 0.12))
    assert main(["info", str(path)]) == 0
    assert "1 × 0.12 × 0.12 µm" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "spinetrack", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("spinetrack ")


def test_library_never_imports_napari_or_qt():
    code = (
        "import sys, pkgutil, importlib, spinetrack\n"
        "for m in pkgutil.walk_packages(spinetrack.__path__, 'spinetrack.'):\n"
        "    if m.name != 'spinetrack.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in "
        "('napari', 'PyQt6', 'PyQt5', 'PySide6', 'qtpy', 'magicgui', 'vispy')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_info_reports_every_file_and_fails_on_a_bad_one(tmp_path, capsys):
    good = write_session(tmp_path / "good.tif", np.arange(192, dtype=np.uint8).reshape(3, 8, 8),
                         (1, 0.1, 0.1))
    bad = tmp_path / "bad.tif"
    bad.write_text("not a tiff")
    assert main(["info", str(bad), str(good)]) == 2
    out, err = capsys.readouterr()
    assert "good.tif" in out and "bad.tif" in err and len(err.strip().splitlines()) == 1


def test_run_refuses_glob_ordered_sessions_unless_as_given(tmp_path, capsys, monkeypatch):
    import spinetrack.io

    data = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8)
    files = [str(write_session(tmp_path / f"session{k}.tif", data, (1.0, 0.2, 0.2)))
             for k in (1, 10, 2)]  # what the shell makes of session*.tif
    extra = {"run": [], "track": ["--detections", str(tmp_path)],
             "learn": ["--spines", str(tmp_path)]}
    for command in ("run", "track", "learn"):
        assert main([command, *files, "--out", str(tmp_path / "o"), *extra[command]]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "--as-given" in err
        assert "session10.tif, session2.tif" in err and "session2.tif, session10.tif" in err
    assert not (tmp_path / "o").exists()

    def reached(*args, **kwargs):
        raise spinetrack.io.InputError(None, "read_series reached")

    monkeypatch.setattr(spinetrack.io, "read_series", reached)
    assert main(["run", *files, "--out", str(tmp_path / "o"), "--as-given"]) == 2
    assert "read_series reached" in capsys.readouterr().err


def test_help_documents_as_given_and_synth_example_keeps_order(capsys):
    for command in ("run", "synth"):
        try:
            main([command, "--help"])
        except SystemExit:
            pass
    out = capsys.readouterr().out
    assert "--as-given" in out
    assert "session*.tif" not in out


@pytest.mark.parametrize("argv, quiet, verbose, debug", [
    (["info", "a.tif"], False, 0, False),
    (["-q", "info", "a.tif"], True, 0, False),
    (["info", "a.tif", "-q"], True, 0, False),
    (["-v", "run", "a.tif", "--out", "o", "--quiet"], True, 1, False),
    (["report", "-vv", "dir", "--debug"], False, 2, True),
])
def test_general_options_before_or_after_the_command(argv, quiet, verbose, debug):
    from spinetrack.cli import build_parser

    args = build_parser().parse_args(argv)
    assert (args.quiet, args.verbose, args.debug) == (quiet, verbose, debug)


def test_voxel_text_names_each_session_when_they_differ():
    from spinetrack.cli import _voxel_text
    from spinetrack.io import Series, Session

    img = np.zeros((2, 4, 4), np.uint8)
    same = Series((Session(img, (1.0, 0.12, 0.12), "a"), Session(img, (1.0, 0.12, 0.12), "b")))
    assert _voxel_text(same) == "voxel 1 × 0.12 × 0.12 µm"
    differ = Series((Session(img, (1.0, 0.12, 0.12), "a"), Session(img, (2.0, 0.3, 0.3), "b")))
    assert _voxel_text(differ) == "voxel per session a 1 × 0.12 × 0.12, b 2 × 0.3 × 0.3 µm"


def test_a_folder_after_days_gets_a_hint(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--days", "0", "1", str(tmp_path / "demo")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "is not a day number; put --days after the files and folders" in err
    assert not (tmp_path / "demo").exists()
