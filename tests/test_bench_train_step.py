"""``python -m dynroute_lib bench train-step``: side-by-side step times and what it writes (tiny sizes: plumbing)."""
from __future__ import annotations

import json

from dynroute_lib.bench import train_step


def test_train_step_bench_writes_the_ratio_of_the_medians(tmp_path, capsys):
    rc = train_step.main(["--size", "32", "32", "--batch", "2", "--repeats", "1", "--base-channels", "4",
                          "--out", str(tmp_path)])
    assert rc == 0
    out = json.loads((tmp_path / "train_step.json").read_text())
    raw, fix = (r["median_step_s"] for r in out["rows"])
    assert [r["model"] for r in out["rows"]] == ["dynamic_raw_l16", "fix_l16"]
    assert all(r["base_channels"] == 4 and r["mode"] == "eager" for r in out["rows"])
    assert out["raw_over_fix_step_time"] == raw / fix and raw > 0 and fix > 0
    assert "Raw / Fix train-step time" in capsys.readouterr().out
    assert not (tmp_path / "train_step_compile.json").exists()
