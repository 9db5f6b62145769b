"""Reading sessions: formats, voxel sizes, and every kind of bad input."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from spinetrack.cli import main
from spinetrack.errors import InputError
from spinetrack.io import (check_session_order, read_series, read_session, read_tiff,
                           session_paths, write_session)

VOX = (1.0, 0.12, 0.12)


@pytest.fixture
def stack(rng):
    return (rng.random((6, 40, 50)) * 200).astype(np.uint8)


def test_imagej_roundtrip_keeps_voxel_size(tmp_path, stack):
    path = write_session(tmp_path / "s0.tif", stack, (0.8, 0.15, 0.12))
    s = read_session(path)
    assert s.image.shape == (6, 40, 50)
    assert s.image.dtype == np.uint8
    np.testing.assert_array_equal(s.image, stack)
    assert s.voxel_size_um == pytest.approx((0.8, 0.15, 0.12))
    assert s.name == "s0"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_dtypes(tmp_path, stack, dtype):
    data = stack.astype(dtype)
    s = read_session(write_session(tmp_path / "s.tif", data, VOX))
    assert s.image.dtype == dtype


def test_imagej_units_in_nm(tmp_path, stack):
    path = tmp_path / "nm.tif"
    tifffile.imwrite(path, stack, imagej=True, resolution=(1 / 120.0, 1 / 120.0),
                     metadata={"spacing": 1000.0, "unit": "nm", "axes": "ZYX"})
    assert read_tiff(path)[1] == pytest.approx((1.0, 0.12, 0.12))


def test_ome_physical_size(tmp_path, stack):
    path = tmp_path / "s.ome.tif"
    tifffile.imwrite(path, stack, metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.25, "PhysicalSizeZ": 500,
        "PhysicalSizeZUnit": "nm"})
    s = read_session(path)
    assert s.voxel_size_um == pytest.approx((0.5, 0.25, 0.2))
    assert s.name == "s"


def test_explicit_voxel_size_overrides_metadata(tmp_path, stack):
    path = write_session(tmp_path / "s.tif", stack, VOX)
    assert read_session(path, voxel_size_um=(2, 0.3, 0.3)).voxel_size_um == (2.0, 0.3, 0.3)


def test_plain_tiff_needs_voxel_size(tmp_path, stack):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, stack)
    with pytest.raises(InputError, match=r"plain\.tif: has no voxel size.*--voxel-size"):
        read_session(path)
    assert read_session(path, voxel_size_um=VOX).shape == (6, 40, 50)


def test_plain_tiff_resolution_in_cm_without_z(tmp_path, stack):
    path = tmp_path / "cm.tif"
    tifffile.imwrite(path, stack, resolution=(1e4 / 0.2, 1e4 / 0.2), resolutionunit="CENTIMETER")
    with pytest.raises(InputError, match="no z spacing"):
        read_session(path)


def test_single_plane_is_one_plane_stack(tmp_path, stack):
    path = tmp_path / "plane.tif"
    tifffile.imwrite(path, stack[0], imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"unit": "um"})
    s = read_session(path)
    assert s.image.shape == (1, 40, 50)
    assert s.voxel_size_um[1:] == pytest.approx((0.2, 0.2))


def test_4d_file_is_a_series(tmp_path, rng):
    data = (rng.random((3, 4, 20, 30)) * 100).astype(np.uint8)
    path = write_session(tmp_path / "series.tif", data, VOX)
    series = read_series(path, days=[0, 1, 3])
    assert len(series) == 3
    assert series.names == ["t0", "t1", "t2"]
    assert series.days == [0.0, 1.0, 3.0]
    np.testing.assert_array_equal(series[2].image, data[2])
    with pytest.raises(InputError, match="4-D"):
        read_session(path)


def test_series_from_files_and_folder_natural_order(tmp_path, stack):
    for name in ["day10.tif", "day2.tif", "day1.tif"]:
        write_session(tmp_path / name, stack, VOX)
    (tmp_path / "notes.txt").write_text("not a session")
    assert [p.name for p in session_paths(tmp_path)] == ["day1.tif", "day2.tif", "day10.tif"]
    series = read_series(tmp_path)
    assert series.names == ["day1", "day2", "day10"]
    assert series.days is None


@pytest.mark.parametrize("names", [["session1.tif", "session10.tif", "session2.tif"],
                                   ["day0.tif", "day10.tif", "day4.tif", "day7.tif"],
                                   ["d10/s.tif", "d4/s.tif"]])
def test_numbered_files_out_of_natural_order_are_refused(names):
    with pytest.raises(InputError, match="--as-given") as err:
        check_session_order([Path(n) for n in names])
    message = str(err.value)
    assert "\n" not in message and all(Path(n).name in message for n in names)


@pytest.mark.parametrize("names", [["session1.tif", "session2.tif", "session10.tif"],
                                   ["s01.tif", "s02.tif", "s10.tif"],
                                   ["baseline.tif", "after.tif"],  # no numbers to go by
                                   ["m1_day4.tif", "m2_day0.tif"],  # the names differ
                                   ["day0.tif", "day0_redo.tif", "day1.tif"],
                                   ["only.tif"]])
def test_files_in_order_or_without_comparable_numbers_pass(names):
    check_session_order([Path(n) for n in names])


def test_sessions_of_different_shapes_are_allowed(tmp_path, stack):
    a = write_session(tmp_path / "a.tif", stack, VOX)
    b = write_session(tmp_path / "b.tif", stack[:4, :30], VOX)
    series = read_series([a, b])
    assert series[0].shape != series[1].shape


def test_a_single_plane_among_stacks_is_refused(tmp_path, stack):
    a = write_session(tmp_path / "a.tif", stack, VOX)
    b = write_session(tmp_path / "b.tif", stack.max(axis=0), VOX)
    with pytest.raises(InputError, match="single plane") as err:
        read_series([a, b])
    assert err.value.path == b


def test_a_much_smaller_field_is_warned_of(tmp_path, stack, caplog):
    a = write_session(tmp_path / "a.tif", stack, VOX)
    b = write_session(tmp_path / "b.tif", stack[:, :15, :15], VOX)
    read_series([a, b])
    assert "called lost" in caplog.text


def test_an_output_folder_that_cannot_be_made_fails_before_any_work(tmp_path, stack, capsys):
    a = write_session(tmp_path / "a.tif", stack, VOX)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    status = main(["run", str(a), str(a), "--out", str(blocker / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "cannot create or write the output folder" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------- bad input, one by one


def _bad(tmp_path, stack, kind) -> Path:
    path = tmp_path / f"{kind}.tif"
    if kind == "missing":
        return path
    if kind == "not_tiff":
        path.write_text("this is a text file, not an image\n")
    elif kind == "truncated_compressed":
        write_session(path, stack, VOX)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "truncated_raw":
        write_session(path, stack, VOX, compression=None)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "five_d":
        tifffile.imwrite(path, np.ones((2, 2, 3, 8, 8), np.uint8) * np.arange(8, dtype=np.uint8),
                         metadata={"axes": "QQQYX"})
    elif kind == "five_d_samples":  # tifffile stores the 4 before (y, x) as colour samples
        tifffile.imwrite(path, np.ones((2, 2, 4, 8, 8), np.uint8) * np.arange(8, dtype=np.uint8))
    elif kind == "rgb":
        tifffile.imwrite(path, (stack[0, :, :, None] * np.ones(3, np.uint8)), photometric="rgb")
    elif kind == "channels":
        data = np.stack([stack, stack // 2], axis=1)
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX", "spacing": 1,
                                                            "unit": "um"})
    elif kind == "empty":
        tifffile.imwrite(path, np.zeros((0, 10, 10), np.uint8))
    elif kind == "constant":
        write_session(path, np.full_like(stack, 7), VOX)
    elif kind == "nan":
        data = stack.astype(np.float32)
        data[2, 5, 5] = np.nan
        data[3, 5, 5] = np.inf
        write_session(path, data, VOX)
    elif kind == "zero_voxel":
        tifffile.imwrite(path, stack, imagej=True, resolution=(1 / 0.12, 1 / 0.12),
                         metadata={"spacing": 0.0, "unit": "um", "axes": "ZYX"})
    elif kind == "negative_voxel":
        tifffile.imwrite(path, stack, imagej=True, resolution=(1 / 0.12, 1 / 0.12),
                         metadata={"spacing": -1.0, "unit": "um", "axes": "ZYX"})
    elif kind == "folder":
        path.mkdir()
    return path


BAD = {
    "missing": "no such file",
    "not_tiff": "not a readable TIFF",
    "truncated_compressed": "truncated",
    "truncated_raw": "truncated",
    "five_d": "dimensions",
    "five_d_samples": r"has 5 dimensions \(2, 2, 4, 8, 8\)",
    "rgb": "RGB",
    "channels": "channels",
    "empty": "empty|no images",
    "constant": "constant",
    "nan": "NaN or infinite",
    "zero_voxel": "voxel size .* must be positive",
    "negative_voxel": "voxel size .* must be positive",
    "folder": "folder",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_raises_one_line_naming_file(tmp_path, stack, kind):
    path = _bad(tmp_path, stack, kind)
    with pytest.raises(InputError, match=BAD[kind]) as info:
        read_session(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_on_command_line_is_one_line_no_traceback(tmp_path, stack, kind, capsys):
    path = _bad(tmp_path, stack, kind)
    status = main(["info", str(path)])
    err = capsys.readouterr().err
    assert status == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert str(path) in lines[0]


@pytest.mark.parametrize("voxel", [(0, 0.1, 0.1), (1, -0.1, 0.1), (1, float("nan"), 0.1)])
def test_bad_explicit_voxel_size(tmp_path, stack, voxel):
    path = write_session(tmp_path / "s.tif", stack, VOX)
    with pytest.raises(InputError, match="must be positive"):
        read_session(path, voxel_size_um=voxel)


def test_series_argument_mismatch(tmp_path, stack):
    a = write_session(tmp_path / "a.tif", stack, VOX)
    with pytest.raises(InputError, match="2 names given for 1 sessions"):
        read_series([a], names=["x", "y"])
    with pytest.raises(InputError, match="must not decrease"):
        read_series([a, a], days=[3, 1])
