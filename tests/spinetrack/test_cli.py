import subprocess
import sys

import numpy as np

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


def test_a_folder_after_days_gets_a_hint(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["synth", "--days", "0", "1", str(tmp_path / "demo")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "is not a day number; put --days after the files and folders" in err
    assert not (tmp_path / "demo").exists()
