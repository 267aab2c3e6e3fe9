"""Diag: full-image vs tiled (crop-size windows) evaluation of a checkpoint on CamVid val at 240x320."""
import sys, torch, torch.nn.functional as F
from dynroute_lib.engine.checkpoint import load_any
from dynroute_lib.data import build_dataset, pad_to_multiple
from dynroute_lib.engine.metrics import StreamSegMetrics
torch.set_num_threads(1)
for ck in sys.argv[1:]:
    net, cfg, _ = load_any(ck, None); net.eval()
    ds = build_dataset("camvid", None, "val", train=False, normalization=cfg.normalization, resize_hw=(240, 320))
    m_full, m_tile = StreamSegMetrics(11, 255), StreamSegMetrics(11, 255)
    with torch.inference_mode():
        for i in range(len(ds)):
            img, mask, meta = ds[i]; h, w = meta["orig_hw"]; img = img[:, :h, :w]
            x, _ = pad_to_multiple(img)
            full = net(x[None])[0][..., :h, :w]
            out = torch.zeros_like(full)
            for y0 in (0, h // 2):
                for x0 in (0, w // 2):
                    t = img[:, y0:y0 + h // 2, x0:x0 + w // 2]
                    tp, _ = pad_to_multiple(t)
                    out[..., y0:y0 + h // 2, x0:x0 + w // 2] = net(tp[None])[0][..., :t.shape[1], :t.shape[2]]
            m_full.update(full.argmax(1)[0], mask[:h, :w]); m_tile.update(out.argmax(1)[0], mask[:h, :w])
    rf, rt = m_full.results(), m_tile.results()
    print(f"{ck}: full {rf['miou_pct']:.2f} % (pix {rf['pixel_acc_pct']:.1f})  tiled 2x2 {rt['miou_pct']:.2f} % (pix {rt['pixel_acc_pct']:.1f})", flush=True)
