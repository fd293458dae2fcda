"""safeopen.open_beneath: a kernel's file opened without following anything
the kernel could have swapped in (symlinks, FIFOs), on real directories."""
from __future__ import annotations

import os

import pytest

from cellserver.safeopen import open_beneath


@pytest.fixture
def root(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_bytes(b"inside")
    (tmp_path / "top.txt").write_bytes(b"top")
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    os.symlink(outside, tmp_path / "out")                 # a directory link to outside the root
    os.symlink(tmp_path / "d", tmp_path / "in")            # a directory link to inside it
    os.symlink(tmp_path / "top.txt", tmp_path / "alias")   # a file link, inside too
    os.mkfifo(tmp_path / "pipe")
    return str(tmp_path)


def test_regular_files_beneath_the_root_open(root):
    with open_beneath(root, "d/f.txt") as f:
        assert f.read() == b"inside"
    with open_beneath(root, "./top.txt") as f:
        assert f.read() == b"top"


@pytest.mark.parametrize("rel", ["out/secret", "in/f.txt", "alias", "pipe", "d", "d/", "", "..", "../x",
                                 "d/../top.txt", "nope", "d/f.txt/x", "top.txt\0"])
def test_links_fifos_directories_and_dot_dots_are_not_files(root, rel):
    # every symlink is refused, even one that stays inside: the kernel can swap
    # its target between any check and the open, so only "no symlink at all" is safe;
    # a FIFO is refused without blocking (O_NONBLOCK), which would have stalled the reactor
    with pytest.raises(FileNotFoundError):
        open_beneath(root, rel)


def test_what_it_opened_stays_the_file_it_checked(root):
    f = open_beneath(root, "d/f.txt")
    os.rename(os.path.join(root, "d"), os.path.join(root, "gone"))
    os.symlink(os.path.join(root, "out"), os.path.join(root, "d"))     # the swap, after the open
    assert f.read() == b"inside"
    f.close()
    with pytest.raises(FileNotFoundError):
        open_beneath(root, "d/secret")
