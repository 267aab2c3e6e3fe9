"""Thin ipywidgets front end of the per-image route inspector (paper Sec. 4.3, Fig. 5; handbook §2 "the inspector").

Stock widgets only (pitfall 5): an ``IntSlider`` over the inspected images (``continuous_update=False``), a
model ``Dropdown`` (checkpoints found plus untrained presets), a ``FileUpload`` for one's own image, a
"show ground truth" ``Checkbox``, a ``FloatLogSlider`` threshold for "active" (its range spans the gate values
of the current model's records, so every step changes what is drawn; disabled for a fixed route),
``ToggleButtons`` for official / executed FLOPs, a "pin for comparison" ``Button``, an ``HTML`` message line
(banner and errors: a bad checkpoint or a non-image upload shows a message, never a traceback) and an
``Output`` sized to the figure it shows (no blank band under a one-block figure). A pinned record keeps
the FLOPs statistics of its own model, so a model of another width is never compared with this one's mean. Every
change redraws through :func:`inspector.view.render_inspection` and replaces the ``Output``'s
content in one step (the effect of ``clear_output(wait=True)`` + ``display``, pitfall 6, without ``with out:``
capture: under papermill, nbclient's Output mimic answering captured displays on the shell channel stalled
cells until the execution timeout, cf. jupyter/nbclient#312). The figure becomes a PNG without pyplot, so no
figure is left open.
"""
from __future__ import annotations

import base64
import html

import ipywidgets as W
import numpy as np

from ..data import DataError
from .records import collect_records, flops_summary, image_record, inspection_scale, load_source, threshold_range
from .view import FLOPS_KEYS, PNG_DPI, fig_to_png, render_inspection

_USER_ERRORS = (ValueError, FileNotFoundError, DataError, ImportError)


class Inspector:
    """The widget tree plus its state; display it with ``display(ui)`` (or as a cell's last value).

    Attributes:
        slider: ``IntSlider`` over positions in ``records`` (the browser test reads ``ui.slider.value``).
        records: Records of the current model.
        pinned: The record drawn in the comparison row, or None.
        out: The ``Output`` the figure is drawn into.
    """

    def __init__(self, records: list[dict], *, info, dataset=None, model=None, banner: str = "",
                 sources: list[tuple[str, str]] | None = None, source: str | None = None, device: str = "cpu",
                 smoke: bool = False, seed: int = 0) -> None:
        if not records:
            raise ValueError("the inspector needs at least one record")
        self.records, self.info, self.dataset, self.model = records, info, dataset, model
        self.banner, self.device, self.smoke, self.seed = banner, device, smoke, seed
        self.pinned, self.pinned_stats, self.upload_record, self.error = None, None, None, ""
        options = sources or [(f"current: {records[0].get('source', 'model')}", "current")]
        self.slider = W.IntSlider(value=0, min=0, max=len(records) - 1, step=1, description="image",
                                  continuous_update=False)
        self.source = W.Dropdown(options=options, value=source if source in dict(options).values() else options[0][1],
                                 description="model", layout=W.Layout(width="360px"))
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="your image")
        self.show_gt = W.Checkbox(value=False, description="show ground truth", indent=False)
        self.threshold = W.FloatLogSlider(value=1e-4, base=10, min=-4, max=-0.3, step=0.1, description="active >",
                                          readout_format=".2g", continuous_update=False)
        self.flops_kind = W.ToggleButtons(options=["official", "executed"], value="official",
                                          tooltips=["official counting rule", "what the sparse executor ran"],
                                          style={"button_width": "80px"})
        self._fit_threshold()
        self.pin = W.Button(description="pin for comparison", icon="thumbtack", layout=W.Layout(width="180px"))
        self.message = W.HTML()
        self.out = W.Output(layout=W.Layout(width="100%", height="560px", overflow="auto", border="1px solid #ddd"))
        flops = W.HBox([W.Label("FLOPs:"), self.flops_kind], layout=W.Layout(align_items="center"))
        self.box = W.VBox([W.HBox([self.slider, self.source]), W.HBox([self.threshold, flops]),
                           W.HBox([self.show_gt, self.pin, self.upload]), self.message, self.out])
        self.slider.observe(self._on_slider, names="value")
        self.source.observe(self._on_source, names="value")
        self.upload.observe(self._on_upload, names="value")
        for w in (self.show_gt, self.threshold, self.flops_kind):
            w.observe(lambda _change: self.refresh(), names="value")
        self.pin.on_click(self._on_pin)
        self.refresh()

    # ---- state -----------------------------------------------------------------------------------------
    @property
    def selected_index(self) -> int:
        """Data set index of the image the slider selects."""
        return int(self.records[self.slider.value]["index"])

    @property
    def current(self) -> dict:
        """The record on show: an uploaded image if any, else the slider's image."""
        return self.upload_record if self.upload_record is not None else self.records[self.slider.value]

    def _repr_mimebundle_(self, **kwargs):
        return self.box._repr_mimebundle_(**kwargs)

    # ---- drawing ---------------------------------------------------------------------------------------
    def _fit_threshold(self) -> None:
        """Span the threshold slider over the current records' gate values (log-spaced; off for a fixed route)."""
        rng = threshold_range(self.records)
        t = self.threshold
        with t.hold_trait_notifications():
            if rng is None:
                t.disabled, t.description = True, "no gates"
                return
            lo, hi = np.log10(rng[0]), np.log10(rng[1])
            t.disabled, t.description = False, "active >"
            t.min, t.max = min(lo, t.max), max(hi, t.min)         # never min > max in between
            t.min, t.max, t.step = lo, hi, (hi - lo) / 40
            t.value = float(np.clip(t.value, rng[0], rng[1]))

    def refresh(self) -> None:
        """Redraw the figure, then the message line (so a test seeing the message also sees the figure)."""
        rec, kind = self.current, self.flops_kind.value
        threshold = self.threshold.value if not self.threshold.disabled else 0.5
        pinned_stats = self.pinned_stats[kind] if self.pinned_stats else None
        fig = render_inspection(rec, info=self.info, flops_stats=flops_summary(self.records, kind),
                                show_gt=self.show_gt.value, threshold=threshold, flops_kind=kind,
                                compare=self.pinned, compare_stats=pinned_stats,
                                scale=inspection_scale(self.model, self.info, self.records) if self.model else None)
        height = int(round(fig.get_size_inches()[1] * PNG_DPI)) + 8
        png = base64.b64encode(fig_to_png(fig, dpi=PNG_DPI)).decode("ascii")
        self.out.layout.height = f"{height}px"
        # One state update replacing the Output's content = clear_output(wait=True) + display, minus the
        # `with out:` capture that stalls headless (papermill) runs (see the module docstring).
        self.out.outputs = ({"output_type": "display_data", "metadata": {},
                             "data": {"image/png": png, "text/plain": "<route inspector figure>"}},)
        what = f"image #{rec['index']} {rec['name']}" if rec["index"] >= 0 else f"uploaded {rec['name']}"
        lines = [f"<b>{html.escape(self.banner)}</b>"] if self.banner else []
        lines.append(f"showing {html.escape(what)}: {rec['real_gflops']:.4g} GFLOPs official, "
                     f"{rec['exec_gflops']:.4g} executed")
        if self.pinned is not None:
            lines.append(f"pinned: {html.escape(str(self.pinned.get('source')))} / {html.escape(self.pinned['name'])}")
        if self.error:
            lines.append(f"<span style='color:#b00020'>&#9888; {html.escape(self.error)}</span>")
        self.message.value = "<br>".join(lines)

    def _fail(self, err: Exception) -> None:
        self.error = str(err)
        self.refresh()

    # ---- callbacks -------------------------------------------------------------------------------------
    def _on_slider(self, _change) -> None:
        self.upload_record, self.error = None, ""
        self.refresh()

    def _on_source(self, change) -> None:
        if change["new"] == "current":
            return
        try:
            if self.dataset is None:
                raise ValueError("no data set was given to the inspector, so other models cannot be inspected")
            model, banner = load_source(change["new"], num_classes=self.info.num_classes, smoke=self.smoke,
                                        seed=self.seed)
            records = collect_records(model, self.dataset, [r["index"] for r in self.records], device=self.device)
        except _USER_ERRORS as e:
            return self._fail(e)
        self.model, self.banner, self.records, self.upload_record, self.error = model, banner, records, None, ""
        self._fit_threshold()
        self.refresh()

    def _on_upload(self, change) -> None:
        if not change["new"]:
            return
        item = change["new"][-1]
        self.upload.value = ()                  # cleared, so the same file can be chosen again
        try:
            if self.model is None:
                raise ValueError("no model was given to the inspector, so uploads cannot be inspected")
            self.upload_record = image_record(self.model, item["content"], name=item["name"], device=self.device,
                                              max_hw=(256, 512) if self.smoke else (512, 1024))
            self.error = ""
        except _USER_ERRORS as e:
            self.upload_record = None
            return self._fail(e)
        self.refresh()

    def _on_pin(self, _button) -> None:
        self.pinned = None if self.pinned is not None else dict(self.current)
        self.pinned_stats = {k: flops_summary(self.records, k) for k in FLOPS_KEYS} if self.pinned else None
        self.pin.description = "unpin" if self.pinned is not None else "pin for comparison"
        self.refresh()


def make_inspector(records: list[dict], **kwargs) -> Inspector:
    """Build the inspector widget for ``records`` (keyword arguments: see :class:`Inspector`)."""
    return Inspector(records, **kwargs)
