"""Run by test_train.py under torchrun (2 CPU processes, gloo): train briefly, dump this rank's weights."""
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dynroute_lib.config import for_run  # noqa: E402
from dynroute_lib.engine.train import train  # noqa: E402

out = Path(sys.argv[1])
m, t = for_run("dynamic_raw_l16", smoke=True)
m = replace(m, num_layers=3)
t = replace(t, iters=3, batch=4, precise_bn_iters=0)
_, net = train(m, t, out, progress_bar=False, return_model=True)
rank = dist.get_rank()
torch.save(net.state_dict(), out / f"rank{rank}.pt")
if rank == 0:
    (out / "ranks.json").write_text(json.dumps({"world": dist.get_world_size()}))
dist.barrier()
dist.destroy_process_group()
