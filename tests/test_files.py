import pytest

from course_utils import files


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    files.atomic_write(path, "first")
    files.atomic_write(path, b"second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]  # no temporary left behind


def test_atomic_path_keeps_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "a.bin"
    files.atomic_write(path, b"old")
    with pytest.raises(RuntimeError):
        with files.atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_hashes(tmp_path):
    path = files.atomic_write(tmp_path / "x", b"abc")
    assert files.sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert files.md5_bytes(b"abc") == "900150983cd24fb0d6963f7d28e17f72"


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    path = files.atomic_write(tmp_path / "p", b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
