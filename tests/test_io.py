"""Atomic writes: a failed write leaves the previous file as it was, and no temporary file behind."""

from __future__ import annotations

import json

import pytest
import torch

from vaeas import io


def test_writers_round_trip(tmp_path):
    io.write_json({"a": 1.5}, tmp_path / "x.json")
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1.5}
    io.write_csv([{"epoch": 1, "kl": 0.5}, {"epoch": 2, "kl": 0.25, "mi": 1.0}], tmp_path / "h.csv")
    assert (tmp_path / "h.csv").read_text().splitlines() == ["epoch,kl,mi", "1,0.5,", "2,0.25,1.0"]
    io.save_torch({"w": torch.arange(3)}, tmp_path / "c.pt")
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["w"], torch.arange(3))


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    io.write_json({"old": True}, target)

    def crash(f):
        f.write(b"{half a fi")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        io.atomic_write(target, crash)
    assert json.loads(target.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_written_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    io.write_text("x", tmp_path / "f.txt")
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o666 & ~mask
