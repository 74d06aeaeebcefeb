"""``attrib report``: a static HTML gallery of a dataset run's store.

One page, ``index.html``, with every CSS rule and script inline (no server, no
network, nothing external), and two PNGs per sample next to it
(``img/NNNNNN.png``: the input's thumbnail; ``map/NNNNNN.png``: the map —
Grad-CAM-shaped maps as a jet overlay on the picture, input-space maps in
grayscale). A store of several methods gets one map column per method, side
by side in the run's order (``map/METHOD/NNNNNN.png``). The table is
paginated in the browser and sorts by sample, confidence (the softmax
probability of the predicted class), whether the prediction matched the
label, and any per-sample metric the store keeps under ``metrics/``. The
sort and page live in the URL's hash (``#sort=confidence&order=asc&page=2``),
so a link opens the same view.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._dataset._store import MapStore, open_maps
from ._errors import argument_error, shown

__all__ = ["write_report"]

_READ_ROWS = 256  # samples read from the store at a time (memory stays flat)


def _softmax_max(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return np.asarray(p.max(axis=1) / p.sum(axis=1))


def _map_pictures(maps: np.ndarray, layout: str, thumbs: np.ndarray) -> np.ndarray:
    """Each map as uint8 RGB at its thumbnail's size: overlay for (N, H, W), grayscale otherwise."""
    from . import postprocess as pp

    size = thumbs.shape[1:3]
    if maps.ndim == 3:  # a CAM: min-max scaled, coloured with jet, over the picture
        heat = pp.minmax(pp.resize_map(maps.astype(np.float64), size))
        pictures = pp.overlay(thumbs.astype(np.float64) / 255.0, heat, "jet", 0.5)
    else:
        gray = pp.grayscale(maps, layout)
        if gray.shape[1:] != tuple(size):
            gray = np.clip(pp.resize_map(gray.astype(np.float64), size), 0.0, 1.0)
        pictures = np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(np.round(np.clip(pictures, 0.0, 1.0) * 255.0), dtype=np.uint8)


def _save_png(picture: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(picture).save(path, optimize=False)


def write_report(store: Any, out: Any, *, per_page: int = 50, limit: int | None = None) -> Path:
    """Write the gallery of a store made by :func:`attrib.explain_dataset`.

    Parameters
    ----------
    store : str, path-like or MapStore
        The Zarr store (it must hold thumbnails, i.e. not ``thumbnail=None``).
    out : str or path-like
        Folder for ``index.html``, ``img/`` and ``map/`` (created).
    per_page : int
        Rows per page.
    limit : int, optional
        Only the first ``limit`` samples.

    Returns
    -------
    Path
        The page, ``out/index.html``.
    """
    maps = store if isinstance(store, MapStore) else open_maps(store)
    if isinstance(per_page, bool) or not isinstance(per_page, int) or per_page < 1:
        raise argument_error("per_page", "a positive int", per_page)
    if "thumbnails" not in maps:
        raise argument_error("store", "a store with thumbnails of the inputs",
                             shown("a store made with thumbnail=None"),
                             "Run explain_dataset again with thumbnail=112 (the default).")
    n = len(maps) if limit is None else min(len(maps), int(limit))
    root = Path(os.fspath(out))
    (root / "img").mkdir(parents=True, exist_ok=True)
    # one folder of map pictures per method; a store of one keeps them in map/ itself
    folders = {method: root / "map" / method if maps.several else root / "map"
               for method in maps.methods}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    arrays = {method: maps.maps(method)["attribution"] for method in maps.methods}
    settings = maps.settings
    metrics = maps.metrics()
    has_labels = "labels" in maps
    rows: list[dict[str, Any]] = []
    for start in range(0, n, _READ_ROWS):
        stop = min(n, start + _READ_ROWS)
        thumbs = np.asarray(maps["thumbnails"][start:stop])
        logits = np.asarray(maps["logits"][start:stop])
        targets = np.asarray(maps["targets"][start:stop])
        labels = np.asarray(maps["labels"][start:stop]) if has_labels else None
        pictures = {method: _map_pictures(np.asarray(array[start:stop]),
                                          str(settings.get("layout", "NCHW")), thumbs)
                    for method, array in arrays.items()}
        confidence = _softmax_max(logits)
        predicted = logits.argmax(axis=1)
        values = {name: np.asarray(array[start:stop], dtype=np.float64)
                  for name, array in metrics.items()}
        for j in range(stop - start):
            i = start + j
            _save_png(thumbs[j], root / "img" / f"{i:06d}.png")
            for method, folder in folders.items():
                _save_png(pictures[method][j], folder / f"{i:06d}.png")
            row: dict[str, Any] = {
                "i": i, "target": int(targets[j]), "pred": int(predicted[j]),
                "conf": round(float(confidence[j]), 6),
            }
            if labels is not None:
                row["label"] = int(labels[j])
                row["correct"] = bool(predicted[j] == labels[j])
            for name, value in values.items():
                row[name] = None if not np.isfinite(value[j]) else round(float(value[j]), 6)
            rows.append(row)
    page = root / "index.html"
    page.write_text(_page(rows, settings, sorted(metrics), has_labels, per_page,
                          maps.methods if maps.several else None), encoding="utf-8")
    return page


def _map_columns(methods: list[str] | None) -> tuple[str, str]:
    """The header cells and the script line of the map columns: one, or one per method."""
    if methods is None:  # a store of one method: the page as it always was
        return ("<th>map</th>",
                'image(tr, "map/" + name(row.i), "map " + row.i);')
    headers = "".join(f"<th>{html.escape(method)}</th>" for method in methods)
    return (headers, 'for (const method of DATA.methods) image(tr, "map/" + method + "/" + name(row.i), '
                     'method + " map " + row.i);')


def _page(rows: list[dict[str, Any]], settings: dict[str, Any], metric_names: list[str],
          has_labels: bool, per_page: int, methods: list[str] | None = None) -> str:
    names = settings.get("class_names") or []
    sorts = [("index", "sample"), ("conf", "confidence")]
    if has_labels:
        sorts.append(("correct", "correct vs label"))
    sorts += [(f"metric:{m}", m) for m in metric_names]
    options = "".join(f'<option value="{html.escape(k)}">{html.escape(v)}</option>' for k, v in sorts)
    shown_method = settings.get("method") if methods is None else ", ".join(methods)
    title = (f"attrib report: {shown_method} ({settings.get('backend')}), "
             f"{len(rows)} samples")
    described = ", ".join(f"{k}={settings[k]!r}" for k in ("method", "layer", "target", "objective",
                                                           "backend") if settings.get(k) is not None)
    if methods is not None and settings.get("options"):
        described += f", options={settings['options']!r}"
    content: dict[str, Any] = {"rows": rows, "classes": names, "metrics": metric_names,
                               "perPage": per_page, "labels": has_labels}
    if methods is not None:
        content["methods"] = methods
    data = json.dumps(content, separators=(",", ":"))
    headers, cells = _map_columns(methods)
    return _TEMPLATE.replace("{title}", html.escape(title)).replace("{described}", html.escape(described)) \
        .replace("{map_headers}", headers).replace("{map_cells}", cells) \
        .replace("{options}", options).replace("{data}", data.replace("</", "<\\/"))


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin-bottom: 0.2em; }
.settings { color: #555; font-size: 0.9em; margin-bottom: 1em; }
.controls { display: flex; gap: 1em; align-items: center; margin-bottom: 1em; flex-wrap: wrap; }
table { border-collapse: collapse; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: middle; }
td img { width: 112px; height: 112px; object-fit: contain; image-rendering: pixelated; display: block; }
tr.wrong td.verdict { color: #b00020; font-weight: bold; }
tr.right td.verdict { color: #1b7f3b; }
</style>
</head>
<body>
<h1>{title}</h1>
<div class="settings">{described}</div>
<div class="controls">
  <label>Sort by <select id="sort">{options}</select></label>
  <label>Order <select id="order"><option value="asc">ascending</option>
    <option value="desc">descending</option></select></label>
  <button id="prev" type="button">&larr; previous</button>
  <span id="pageinfo"></span>
  <button id="next" type="button">next &rarr;</button>
</div>
<table id="gallery">
<thead><tr><th>#</th><th>image</th>{map_headers}<th>predicted</th><th>confidence</th>
<th>target</th><th>label</th><th>verdict</th><th>metrics</th></tr></thead>
<tbody id="rows"></tbody>
</table>
<script>
"use strict";
const DATA = {data};
const state = { sort: "index", order: "asc", page: 1 };

function className(k) { return DATA.classes.length > k ? DATA.classes[k] + " (" + k + ")" : String(k); }

function key(row) {
  if (state.sort === "conf") return row.conf;
  if (state.sort === "correct") return row.correct === undefined ? -1 : (row.correct ? 1 : 0);
  if (state.sort.startsWith("metric:")) {
    const v = row[state.sort.slice(7)];
    return v === null || v === undefined ? -Infinity : v;
  }
  return row.i;
}

function sorted() {
  const rows = DATA.rows.slice();
  const sign = state.order === "asc" ? 1 : -1;
  rows.sort((a, b) => (key(a) - key(b)) * sign || a.i - b.i);
  return rows;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
}

function image(tr, src, alt) {
  const td = document.createElement("td");
  const img = document.createElement("img");
  img.src = src; img.alt = alt; img.loading = "lazy";
  td.appendChild(img); tr.appendChild(td);
}

function render() {
  const rows = sorted();
  const pages = Math.max(1, Math.ceil(rows.length / DATA.perPage));
  state.page = Math.min(Math.max(1, state.page), pages);
  const body = document.getElementById("rows");
  body.replaceChildren();
  const name = (i) => String(i).padStart(6, "0") + ".png";
  for (const row of rows.slice((state.page - 1) * DATA.perPage, state.page * DATA.perPage)) {
    const tr = document.createElement("tr");
    tr.className = "row" + (row.correct === undefined ? "" : row.correct ? " right" : " wrong");
    tr.dataset.index = row.i;
    cell(tr, String(row.i));
    image(tr, "img/" + name(row.i), "input " + row.i);
    {map_cells}
    cell(tr, className(row.pred));
    cell(tr, (100 * row.conf).toFixed(1) + "%");
    cell(tr, className(row.target));
    cell(tr, row.label === undefined ? "" : className(row.label));
    cell(tr, row.correct === undefined ? "" : row.correct ? "correct" : "wrong", "verdict");
    cell(tr, DATA.metrics.map((m) => m + " " + (row[m] === null ? "n/a" : row[m].toFixed(4))).join(", "));
    body.appendChild(tr);
  }
  document.getElementById("pageinfo").textContent = "page " + state.page + " of " + pages +
    " (" + rows.length + " samples)";
  document.getElementById("prev").disabled = state.page <= 1;
  document.getElementById("next").disabled = state.page >= pages;
  document.getElementById("sort").value = state.sort;
  document.getElementById("order").value = state.order;
}

function fromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const sorts = Array.from(document.getElementById("sort").options, (o) => o.value);
  if (sorts.includes(params.get("sort"))) state.sort = params.get("sort");
  if (["asc", "desc"].includes(params.get("order"))) state.order = params.get("order");
  const page = parseInt(params.get("page") || "1", 10);
  state.page = Number.isFinite(page) ? page : 1;
}

function go() {
  location.hash = "sort=" + encodeURIComponent(state.sort) + "&order=" + state.order + "&page=" + state.page;
}

document.getElementById("sort").addEventListener("change", (e) => {
  state.sort = e.target.value; state.page = 1; go();
});
document.getElementById("order").addEventListener("change", (e) => {
  state.order = e.target.value; state.page = 1; go();
});
document.getElementById("prev").addEventListener("click", () => { state.page -= 1; go(); });
document.getElementById("next").addEventListener("click", () => { state.page += 1; go(); });
window.addEventListener("hashchange", () => { fromHash(); render(); });
fromHash();
render();
</script>
</body>
</html>
"""
