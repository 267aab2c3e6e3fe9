"""CPU reproduction plumbing (issue 13): budget trunks are exact, the val curve, convergence, clip modes, cache."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
import torch

from dynroute_lib.analysis import curves, repro
from dynroute_lib.config import for_run
from dynroute_lib.data import build_dataset
from dynroute_lib.engine.checkpoint import read_checkpoint
from dynroute_lib.engine.train import train
from dynroute_lib.engine.val_curve import converged


def _cfg(**over):
    m, t = for_run("dynamic_a", smoke=True, iters=5, ckpt_interval=1, precise_bn_iters=0, **over)
    return m, t


def test_budget_trunk_branch_is_bit_identical_to_one_run(tmp_path):
    m, t = _cfg()
    train(m, t, tmp_path / "whole", device="cpu", progress_bar=False)
    trunk = replace(m, name="budget_trunk", budget_weight=0.0, budget_mu=0.0)
    train(trunk, t, tmp_path / "trunk", device="cpu", progress_bar=False, stop_at=2)   # w(t) = 0 for t/T < 0.4
    train(m, t, tmp_path / "branch", device="cpu", progress_bar=False, branch_from=tmp_path / "trunk" / "last.pt")
    a = read_checkpoint(tmp_path / "whole" / "model_final.pt")["model"]
    b = read_checkpoint(tmp_path / "branch" / "model_final.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = pd.read_csv(tmp_path / "branch" / "train_log.csv")
    assert log["step"].tolist() == [1, 2, 3, 4, 5]
    assert (log["budget"].iloc[:3] == 0).all() and (log["budget"].iloc[3:] > 0).all()   # w(2/5) = 0


def test_branch_refuses_a_trunk_past_the_budget_start_or_of_another_model(tmp_path):
    m, t = _cfg()
    trunk = replace(m, name="budget_trunk", budget_weight=0.0, budget_mu=0.0)
    train(trunk, t, tmp_path / "late", device="cpu", progress_bar=False, stop_at=3)
    with pytest.raises(ValueError, match="past the budget start"):
        train(m, t, tmp_path / "b1", device="cpu", branch_from=tmp_path / "late" / "last.pt")
    with pytest.raises(ValueError, match="differs"):
        train(replace(m, cell_type="sep1"), t, tmp_path / "b2", device="cpu",
              branch_from=tmp_path / "late" / "last.pt")
    with pytest.raises(ValueError, match="differs"):                      # another recipe
        train(m, replace(t, class_weighting="enet"), tmp_path / "b3", device="cpu",
              branch_from=tmp_path / "late" / "last.pt")


def test_a_trunk_seeds_branches_of_either_clip_mode(tmp_path):
    m, t = _cfg()
    trunk = replace(m, name="budget_trunk", budget_weight=0.0, budget_mu=0.0)
    train(trunk, t, tmp_path / "trunk", device="cpu", progress_bar=False, stop_at=2)
    train(m, replace(t, clip_mode="ce_only"), tmp_path / "b", device="cpu", progress_bar=False,
          branch_from=tmp_path / "trunk" / "last.pt")
    assert (tmp_path / "b" / "model_final.pt").is_file()


def test_val_curve_is_logged_and_resumes(tmp_path):
    m, t = _cfg(val_interval=2, eval_limit=1)
    train(m, t, tmp_path / "r", device="cpu", progress_bar=False, stop_at=3)
    train(m, t, tmp_path / "r", device="cpu", progress_bar=False, resume=True)
    val = pd.read_csv(tmp_path / "r" / "val_log.csv")
    assert val["step"].tolist() == [2, 4, 5]
    assert val["val_miou_pct"].between(0, 100).all() and (val["val_real_ratio"] > 0).all()


def test_ce_only_clip_differs_from_joint_once_the_budget_is_on(tmp_path):
    outs = {}
    for mode in ("joint", "ce_only"):
        m, t = _cfg(clip_mode=mode, grad_clip=1e-3)      # a tight clip: the modes must differ
        train(m, t, tmp_path / mode, device="cpu", progress_bar=False)
        outs[mode] = read_checkpoint(tmp_path / mode / "model_final.pt")["model"]
    assert any(not torch.equal(outs["joint"][k], outs["ce_only"][k]) for k in outs["joint"])
    with pytest.raises(ValueError, match="clip_mode"):    # refused when the config is built
        _cfg(clip_mode="bogus")
    assert not (tmp_path / "bad").exists()


def test_converged_rule():
    steps = [300 * i for i in range(1, 11)]
    flat = pd.DataFrame({"step": steps, "val_miou_pct": [10, 30, 40, 45, 48, 50, 51, 51.5, 51.8, 52.0]})
    rising = flat.assign(val_miou_pct=[10, 20, 30, 35, 40, 44, 46, 48, 50, 53])
    assert converged(flat)["converged"] is True            # 51.5 at step 2400 -> 52.0: +0.5 point
    assert converged(rising)["converged"] is False          # 48 -> 53: +5 points
    assert converged(flat.head(1))["converged"] is None


def test_cached_decode_returns_the_same_samples():
    a = build_dataset("synthetic", split="val", train=False, limit=2)
    b = build_dataset("synthetic", split="val", train=False, limit=2).cache_decoded()
    for i in range(2):
        for _ in range(2):                                 # second read comes from the cache
            assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1])


def test_suite_plan_filters_and_rejects_unknown_rows():
    pairs = repro.plan(["dynamic_a"])
    assert pairs == [("dynamic_a", 0), ("dynamic_a", 1), ("dynamic_a", 2)]
    assert repro.plan(["fix_l16"], [1]) == [("fix_l16", 1)]
    assert repro.plan(["hrnetv2", "unet"], [1, 2]) == [("unet", 1), ("unet", 2), ("hrnetv2", 1), ("hrnetv2", 2)]
    assert ("hrnetv2", 1) not in repro.plan([], [1])                     # seeds alone keep the suite's pairs
    with pytest.raises(ValueError, match="--seeds"):
        repro.plan(["unet"], [-1])
    with pytest.raises(ValueError, match="not in the reproduction suite"):
        repro.plan(["dynamic_z"])


def test_seed_summary_mean_and_std():
    rows = pd.DataFrame({"preset": ["a", "a", "a", "b"], "miou_pct": [50.0, 52.0, 54.0, 40.0],
                         "gflops_mean": [1.0, 1.0, 1.0, 2.0], "cost_vs_allopen": [0.5, 0.5, 0.5, 1.0]})
    s = repro.seed_summary(rows).set_index("preset")
    assert s.loc["a", "miou_pct_mean"] == 52.0 and s.loc["a", "miou_pct_std"] == 2.0 and s.loc["a", "n_seeds"] == 3
    assert s.loc["b", "n_seeds"] == 1


def test_seed_columns_join_the_tables_by_preset():
    rows = pd.DataFrame({"preset": ["dynamic_a"] * 3 + ["fix_l16"], "seed": [0, 1, 2, 0],
                         "miou_pct": [30.0, 32.0, 34.0, 40.0], "gflops_mean": [1.0, 1.0, 1.0, 2.0]})
    summary = repro.seed_summary(rows)
    tabs = {"table_4": pd.DataFrame({"preset": ["dynamic_a", "dynamic_b"], "ours_miou_pct": [30.0, 31.0]})}
    out = repro.with_seeds(tabs, summary)["table_4"].set_index("preset")
    assert out.loc["dynamic_a", "ours_miou_seed_mean"] == pytest.approx(32.0)
    assert out.loc["dynamic_a", "ours_miou_std"] == pytest.approx(2.0) and out.loc["dynamic_a", "ours_n_seeds"] == 3
    assert pd.isna(out.loc["dynamic_b", "ours_miou_std"])
    assert repro.with_seeds(tabs, pd.DataFrame()) is tabs


def test_an_alias_row_takes_the_seed_mean_of_the_model_it_was_trained_as():
    rows = pd.DataFrame({"preset": ["dynamic_raw_l16"] * 2, "seed": [0, 1], "miou_pct": [46.0, 48.0],
                         "gflops_mean": [1.0, 1.0]})
    tabs = {"table_2": pd.DataFrame({"preset": ["cell_sep2", "cell_sep1"], "trained_as": ["dynamic_raw_l16", "cell_sep1"],
                                     "ours_miou_pct": [46.0, 44.0]})}
    out = repro.with_seeds(tabs, repro.seed_summary(rows))["table_2"].set_index("preset")
    assert out.loc["cell_sep2", "ours_miou_seed_mean"] == pytest.approx(47.0) and out.loc["cell_sep2", "ours_n_seeds"] == 2
    assert pd.isna(out.loc["cell_sep1", "ours_miou_seed_mean"])


def test_curve_copy_keeps_float32_values_exact_and_is_smaller(tmp_path):
    rng = torch.Generator().manual_seed(0)
    ce = torch.rand(500, generator=rng, dtype=torch.float32) * 3   # logged losses are float32 values
    log = pd.DataFrame({"step": range(1, 501), "ce": [float(v) for v in ce], "lr": [0.05 * (1 - i / 500) ** 0.9
                                                                                  for i in range(500)]})
    src = tmp_path / "train_log.csv"
    log.to_csv(src, index=False)
    dst = curves.copy_curve(src, tmp_path / "curves" / "x_s0_val.csv")
    back = pd.read_csv(dst)
    assert back["step"].tolist() == log["step"].tolist()
    assert torch.equal(torch.tensor(back["ce"].to_numpy(), dtype=torch.float32), ce)
    assert (back["lr"] - log["lr"]).abs().max() <= 1e-9 * log["lr"].abs().max()
    assert dst.stat().st_size < 0.8 * src.stat().st_size


def test_train_curves_are_gzipped_and_a_recopy_gives_the_same_bytes(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"step": range(1, 2001), "ce": [1.0 / i for i in range(1, 2001)]}).to_csv(run / "train_log.csv",
                                                                                          index=False)
    pd.DataFrame({"step": [2000], "val_miou_pct": [30.0]}).to_csv(run / "val_log.csv", index=False)
    curves.copy_curves(run, tmp_path / "c1", "x_s0")
    curves.copy_curves(run, tmp_path / "c2", "x_s0")
    assert sorted(p.name for p in (tmp_path / "c1").iterdir()) == ["x_s0_train.csv.gz", "x_s0_val.csv"]
    gz = tmp_path / "c1" / "x_s0_train.csv.gz"
    assert gz.read_bytes()[:2] == b"\x1f\x8b" and gz.stat().st_size < 0.5 * (run / "train_log.csv").stat().st_size
    assert gz.read_bytes() == (tmp_path / "c2" / "x_s0_train.csv.gz").read_bytes()   # no name, no mtime inside
    pd.testing.assert_frame_equal(pd.read_csv(gz), pd.read_csv(run / "train_log.csv"))


def test_convergence_curves_are_read_and_plotted(tmp_path):
    from dynroute_lib.analysis import figstyle, plots
    (tmp_path / "curves").mkdir()
    pd.DataFrame({"step": [1, 2, 3], "ce": [2.0, 1.5, 1.2]}).to_csv(tmp_path / "curves" / "a_s0_train.csv.gz", index=False)
    pd.DataFrame({"step": [3], "val_miou_pct": [20.0], "val_real_ratio": [0.7]}).to_csv(
        tmp_path / "curves" / "a_s0_val.csv", index=False)
    pd.DataFrame({"step": [1], "ce": [2.0]}).to_csv(tmp_path / "curves" / "b_s0_train.csv.gz", index=False)
    read = repro.read_curves(tmp_path)
    assert set(read) == {"a_s0", "b_s0"} and read["b_s0"][1] is None
    fig = plots.convergence_curves(read, scale={"data": "camvid", "resolution": "240x320", "iters": 3})
    assert figstyle.min_font_pt(fig) >= 9 and len(fig.axes[1].lines) == 1


def test_resume_applies_the_requested_gate_lr_multiplier(tmp_path):
    from dynroute_lib.engine.train import _start
    m, t = _cfg()
    train(m, t, tmp_path / "r", device="cpu", progress_bar=False, stop_at=2)
    run = _start(m, replace(t, gate_lr_mult=2.5), tmp_path / "r", True, "cpu")
    mults = {g["name"]: g["lr_mult"] for g in run.opt.param_groups}
    assert mults and all(v == (2.5 if k.startswith("gate") else 1.0) for k, v in mults.items())
    assert any(k.startswith("gate") for k in mults)


def _committed_row(root, row, **fields):
    import json
    (root / "runs").mkdir(parents=True, exist_ok=True)
    (root / "runs" / f"{row}.json").write_text(json.dumps({"row": row, "resolution": "256x320", **fields}))


def test_tables_from_committed_rows_expand_aliases_and_mark_the_rest_pending(tmp_path):
    """Notebook 03's FROM_RESULTS path: committed row JSONs stand in for checkpoints (never committed)."""
    from dynroute_lib.analysis import tables
    import numpy as np
    _committed_row(tmp_path, "dynamic_raw_l16_s0", gate_mode="soft", miou_pct=41.0, gflops_mean=0.36,
                   allopen_run=0.36, params_m=1.2)
    _committed_row(tmp_path, "dynamic_raw_l16_s1", gate_mode="soft", miou_pct=99.0)   # another seed: not seed 0
    _committed_row(tmp_path, "fix_l16_s0", gate_mode="fixed", miou_pct=42.0, gflops_mean=0.31, allopen_run=0.31,
                   device_name="Trainer CPU")
    plan = tables.plan_runs(["dynamic_raw_l16", "cell_sep2", "fix_l16", "dynamic_a"])
    runs = repro.committed_runs(tmp_path, plan).set_index("preset")
    assert runs.loc["cell_sep2", "miou_pct"] == 41.0 == runs.loc["dynamic_raw_l16", "miou_pct"]
    assert runs.loc["fix_l16", "miou_pct"] == 42.0
    assert runs.loc["dynamic_a", "note"].startswith("pending") and np.isnan(runs.loc["dynamic_a", "miou_pct"])
    t4 = tables.build_table("table_4", runs.reset_index(), {"data": "camvid", "resolution": "240x320",
                                                              "iters": 6000, "device": "cpu"}).set_index("preset")
    assert t4.loc["fix_l16", "ours_cost_vs_raw_pct"] == pytest.approx(100 * 0.31 / 0.36)
    assert t4.loc["fix_l16", "device"] == "Trainer CPU" and t4.loc["dynamic_a", "device"] == "cpu"   # who trained it
    # gate records of gated rows go where notebook 04 reads them; per-image FLOPs of every row
    (tmp_path / "route_records").mkdir()
    np.savez(tmp_path / "route_records" / "dynamic_raw_l16_s0.npz", g=np.ones(2))
    (tmp_path / "per_image").mkdir()
    for row in ("dynamic_raw_l16_s0", "fix_l16_s0"):
        pd.DataFrame({"image": ["x", "y"], "real_gflops": [0.3, 0.4], "macs_gflops": [0.2, 0.3]}).to_csv(
            tmp_path / "per_image" / f"{row}.csv", index=False)
    out = tmp_path / "out"
    (out / "route_records").mkdir(parents=True)
    (out / "route_records" / "cell_mbconv.npz").write_bytes(b"stale")    # an earlier run's record of a pending row
    per_image = repro.committed_records(tmp_path, runs.reset_index(), out)
    assert not (out / "route_records" / "cell_mbconv.npz").exists()
    assert (out / "route_records" / "dynamic_raw_l16.npz").is_file()
    assert not (out / "route_records" / "fix_l16.npz").exists()
    assert sorted(per_image["model"].unique()) == ["dynamic_raw_l16", "fix_l16"] and "true_gmacs" in per_image
    assert len(per_image) == 4           # the aliases of Raw share one trained model: counted once


def test_repro_skips_rows_whose_results_exist_unless_retrain(tmp_path, monkeypatch, capsys):
    """A finished row (its JSON written, its checkpoint maybe on another machine) is not trained again."""
    from dynroute_lib import reproduce
    import os
    trained, env = [], []
    monkeypatch.setattr(reproduce, "run_one", lambda p, s, ctx: trained.append((p, s)) or
                        env.append(os.environ.get("DYNROUTE_COMMIT_RESULTS")) or {"preset": p})
    monkeypatch.setattr(reproduce, "RESULTS_DIR", tmp_path)
    monkeypatch.delenv("DYNROUTE_SMOKE", raising=False)
    monkeypatch.delenv("DYNROUTE_COMMIT_RESULTS", raising=False)
    _committed_row(tmp_path / "repro", "fix_l16_s0", miou_pct=42.0)
    assert reproduce.main(["--only", "fix_l16", "--seeds", "0", "1", "--commit-results"]) == 0
    assert trained == [("fix_l16", 1)] and "fix_l16_s0: done" in capsys.readouterr().out
    assert env == ["1"] and "DYNROUTE_COMMIT_RESULTS" not in os.environ    # set for the rows, restored after
    assert reproduce.main(["--only", "fix_l16", "--seeds", "0", "--commit-results", "--retrain"]) == 0
    assert trained[-1] == ("fix_l16", 0)


def test_each_repro_profile_keeps_its_own_rows(tmp_path, monkeypatch, capsys):
    """`repro --profile repro_t12000` is the same suite at T = 12000: rows of `repro` do not count as its rows,
    and its run sees the longer recipe (same model, every other training field equal)."""
    from dataclasses import asdict
    from dynroute_lib import reproduce
    seen = []
    monkeypatch.setattr(reproduce, "run_one", lambda p, s, ctx: seen.append((p, s, ctx)) or {"preset": p})
    monkeypatch.setattr(reproduce, "RESULTS_DIR", tmp_path)
    monkeypatch.delenv("DYNROUTE_SMOKE", raising=False)
    monkeypatch.delenv("DYNROUTE_COMMIT_RESULTS", raising=False)
    _committed_row(tmp_path / "repro", "fix_l16_s0", miou_pct=42.0)
    assert reproduce.main(["--profile", "repro_t12000", "--only", "fix_l16", "--seeds", "0", "--commit-results"]) == 0
    (preset, seed, ctx), = seen
    assert (preset, seed, ctx.out, ctx.checkpoints_root.name) == ("fix_l16", 0, tmp_path / "repro_t12000", "repro_t12000")
    m6, t6 = for_run("fix_l16", profile="repro")
    m12, t12 = ctx.run_config("fix_l16")
    assert m12 == m6 and t12.iters == 2 * t6.iters
    assert {k: v for k, v in asdict(t12).items() if k != "iters"} == {k: v for k, v in asdict(t6).items() if k != "iters"}
    assert reproduce.main(["--profile", "repro_t12000", "--list", "--only", "fix_l16", "--commit-results"]) == 0
    assert "fix_l16_s0               pending" in capsys.readouterr().out
    with pytest.raises(SystemExit):     # argparse: the choices are the suite's profiles
        reproduce.main(["--profile", "cpu"])


def test_summary_markdown_states_cost_vs_raw_and_convergence(tmp_path):
    base = {"pixel_acc_pct": 80.0, "params_m": 1.0, "gflops_spread": 0.05}
    _committed_row(tmp_path, "dynamic_raw_l16_s0", preset="dynamic_raw_l16", miou_pct=40.0, gflops_mean=0.4,
                   gflops_max=0.4, gflops_min=0.4, converged=False, tail_gain_points=1.5, **base)
    _committed_row(tmp_path, "dynamic_a_s0", preset="dynamic_a", miou_pct=30.0, gflops_mean=0.2, gflops_max=0.21,
                   gflops_min=0.2, converged=True, tail_gain_points=-0.5, **base)
    (tmp_path / "curves").mkdir()      # Raw was resumed once: its wall time is both segments, not the last one
    pd.DataFrame({"step": [1, 2, 3], "wall_s": [1800.0, 3600.0, 1800.0]}).to_csv(
        tmp_path / "curves" / "dynamic_raw_l16_s0_train.csv.gz", index=False)
    md = repro.summary_markdown(tmp_path).splitlines()
    assert len(md) == 6 and "2 rows: **1.5 h** (1.5 h their own" in md[-1]
    a = next(line for line in md if line.startswith("| dynamic_a_s0"))
    assert "| 72.8 / 44.9 |" in a and "**30.0**" in a and "| 50.0 % |" in a and "yes (-0.5)" in a
    assert repro.summary_markdown(tmp_path / "none") == "(no finished rows)"


def test_export_records_mirrors_the_runs_it_is_given(tmp_path):
    """Checkpoint-based records (run_all builds): an earlier build's record of a model not in this build goes."""
    from types import SimpleNamespace
    from dynroute_lib.analysis import tables
    import numpy as np
    run = tmp_path / "run_raw"
    (run / "eval").mkdir(parents=True)
    np.savez(run / "eval" / "records.npz", g=np.ones(2))
    pd.DataFrame({"image": ["x"], "real_gflops": [0.3], "macs_gflops": [0.2]}).to_csv(run / "eval" / "per_image.csv",
                                                                                       index=False)
    ctx = SimpleNamespace(out=tmp_path / "out")
    (ctx.out / "route_records").mkdir(parents=True)
    (ctx.out / "route_records" / "dynamic_a.npz").write_bytes(b"stale")
    runs = pd.DataFrame([{"trained_as": "dynamic_raw_l16", "run_dir": str(run), "gate_mode": "soft",
                          "resolution": "256x320"}])
    per_image = tables.export_records(runs, ctx)
    assert sorted(p.name for p in (ctx.out / "route_records").iterdir()) == ["dynamic_raw_l16.npz"]
    assert np.load(ctx.out / "route_records" / "dynamic_raw_l16.npz")["g"].tolist() == [1.0, 1.0]
    assert per_image["model"].tolist() == ["dynamic_raw_l16"]


def test_common_row_uses_the_committed_gate_records_when_its_parent_checkpoint_is_gone(tmp_path, monkeypatch):
    """A new machine has no checkpoints: Common-A is extracted from the committed dynamic_a_s0 records, not by
    retraining Dynamic-A; a row of another config (hash mismatch) is not trusted and the parent is trained."""
    import json
    import numpy as np
    from dynroute_lib.notebook import setup
    from dynroute_lib.routes.masks import RouteMask
    from dynroute_lib.routes.space import all_nodes, node_key, node_paths
    ctx = setup("repro", smoke=True, profile="repro", results_root=str(tmp_path), device="cpu")
    mcfg, _ = ctx.run_config("dynamic_a", seed=0)
    n_img, L = 20, mcfg.num_layers
    rng = np.random.default_rng(0)
    gates = {node_key(l, s): (rng.random((n_img, len(node_paths(l, s, L)))) < 0.97).astype(np.float32)
             for l, s in all_nodes(L)}
    gates[node_key(0, 0)][:, :] = 1.0                 # a path open in every image is kept
    gates[node_key(0, 0)][0, 0] = 0.0                 # ... and one open in 19 of 20 (95 %) too
    gates[node_key(0, 1)][:2, 0] = 0.0                # 18 of 20 (90 %): dropped
    (ctx.out / "route_records").mkdir(parents=True)
    np.savez(ctx.out / "route_records" / "dynamic_a_s0.npz", **gates)
    _committed_row(ctx.out, "dynamic_a_s0", config_hash=mcfg.hash())

    def no_training(*a, **k):
        raise AssertionError("the parent was trained")
    monkeypatch.setattr(repro, "train_or_load", no_training)
    path, note = repro._common_target("common_a", 0, ctx)
    mask = RouteMask.load(path)
    assert mask.paths[(0, 0)][0] == 1 and mask.paths[(0, 1)][0] == 0
    assert "committed dynamic_a_s0 gate records" in note
    assert (ctx.out / "common_routes" / "common_a.json").read_text() == open(path).read()

    (ctx.out / "runs" / "dynamic_a_s0.json").write_text(json.dumps({"config_hash": "another"}))
    with pytest.raises(AssertionError, match="the parent was trained"):
        repro._common_target("common_a", 0, ctx)
