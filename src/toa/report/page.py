"""The report page: its summary as static HTML, the prompts as one JSON block drawn by a script.

Everything is inline (no network). The summary, tables and histograms are written here with every
text escaped; the prompts are data only: the script draws one page of the prompt list at a time,
a prompt's tree when it is opened and a node's text when it is expanded, with `textContent`
(model output is never parsed as HTML).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from typing import Any

from toa.report.data import Gather, Histogram, histogram

__all__ = ["PAGE_SCRIPT", "PAGE_STYLE", "data_json", "script_safe", "summary_html"]


def data_json(value: Any) -> str:
    """`value` as compact JSON that is safe inside a ``<script>`` element."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return script_safe(text)


def script_safe(text: str) -> str:
    """JSON text that cannot end its ``<script>`` element or enter its escaped states.

    ``<`` occurs in JSON text only inside strings, where ``<\\/`` and ``\\u003c`` mean the same.
    """
    return text.replace("</", "<\\/").replace("<!--", "\\u003c!--")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _count(value: float) -> str:
    return f"{int(value):,}"


def _flops(value: float) -> str:
    if value <= 0:
        return "0"
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}FLOP"
    return f"{value:.0f} FLOP"


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _table(caption: str, header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        body = '<tr><td class="muted" colspan="9">none</td></tr>'
    return f"<table><caption>{_e(caption)}</caption><tr>{head}</tr>{body}</table>"


def _share(counts: Mapping[Any, int], *, by_key: bool = False) -> list[tuple[object, str, str]]:
    """(key, count, share) rows, most first (or by key: depths)."""
    total = sum(counts.values()) or 1
    ordered = sorted(counts.items(), key=lambda kv: kv[0] if by_key else (-kv[1], str(kv[0])))
    return [(key, f"{n:,}", f"{100 * n / total:.0f}%") for key, n in ordered]


def _svg(title: str, hist: Histogram | None) -> str:
    """A small bar chart of `hist` (numbers only: nothing to escape but the title)."""
    if hist is None:
        return f'<figure class="hist"><figcaption>{_e(title)}: no rewards</figcaption></figure>'
    width, height, pad = 320, 120, 18
    peak = max(hist.counts) or 1
    bar = (width - 2 * pad) / len(hist.counts)
    rects = []
    for i, n in enumerate(hist.counts):
        h = (height - 2 * pad) * n / peak
        x, y = pad + i * bar, height - pad - h
        low = hist.low + (hist.high - hist.low) * i / len(hist.counts)
        rects.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" height="{h:.1f}">'
            f"<title>{low:.4g}: {n}</title></rect>"
        )
    total = sum(hist.counts)
    return (
        f'<figure class="hist"><figcaption>{_e(title)} ({total:,})</figcaption>'
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}"/>'
        + "".join(rects)
        + f'<text x="{pad}" y="{height - 4}">{hist.low:.4g}</text>'
        f'<text x="{width - pad}" y="{height - 4}" text-anchor="end">{hist.high:.4g}</text>'
        f'<text x="{pad}" y="12">max {peak:,}</text></svg></figure>'
    )


def summary_html(gather: Gather, manifest: Mapping[str, Any], *, unfinished: int) -> str:
    """The summary section: the run, its compute, who wrote the best answers, the rewards."""
    c = gather.compute
    config_hash = str(manifest.get("config_hash", ""))
    facts: list[tuple[str, str]] = [
        ("strategy", str(manifest.get("strategy", "?"))),
        ("budget", str(manifest.get("budget", "?"))),
        ("config hash", config_hash[:12]),
        ("started", str(manifest.get("started", "?"))),
        ("prompts done", _count(gather.done)),
        ("prompts failed", _count(gather.failed)),
        ("unfinished", _count(unfinished)),
        ("calls", _count(c["calls"])),
        ("failed calls", _count(c["failed_calls"])),
        ("cached / replayed", f"{_count(c['cached_calls'])} / {_count(c['replayed_calls'])}"),
        ("prompt tokens", _count(c["prompt_tokens"])),
        ("completion tokens", _count(c["completion_tokens"])),
        ("FLOPs", _flops(c["flops"])),
        ("reward calls", _count(c["reward_calls"])),
        ("failed rewards", _count(c["failed_rewards"])),
        ("cost", f"${c['cost_usd']:.4f}"),
        ("wall time (sum)", _seconds(c["wall_s"])),
        ("failed nodes", f"{_count(gather.failed_nodes)} of {_count(gather.nodes)}"),
    ]
    cards = "".join(
        f'<div class="fact" data-key="{_e(k)}"><span>{_e(k)}</span><b'
        + (f' title="{_e(config_hash)}"' if k == "config hash" else "")
        + f">{_e(v)}</b></div>"
        for k, v in facts
    )
    agents = sorted(gather.by_agent.items())
    compute_rows = [
        (name, f"{s['calls']:,}", f"{s['failed_calls']:,}", f"{s['prompt_tokens']:,}",
         f"{s['completion_tokens']:,}")
        for name, s in agents
    ]  # fmt: skip
    best = (
        _table("best answers by agent", ("agent", "prompts", "share"), _share(gather.best_by_agent))
        + _table(
            "by depth", ("depth", "prompts", "share"), _share(gather.best_by_depth, by_key=True)
        )
        + _table("by action", ("action", "prompts", "share"), _share(gather.best_by_action))
    )
    compute = _table(
        "compute by agent",
        ("agent", "calls", "failed", "prompt tokens", "completion tokens"),
        compute_rows,
    )
    charts = _svg("best reward per prompt", histogram(gather.best_rewards)) + _svg(
        "every scored reward", histogram(gather.all_rewards)
    )
    return (
        f'<section id="summary"><h2>Summary</h2><div class="facts">{cards}</div>'
        f'<div class="row">{charts}</div><div class="row">{best}{compute}</div></section>'
    )


PAGE_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px;color:#222}
h1{font-size:20px;margin:16px 0 4px}h2{font-size:16px;margin:16px 0 8px}
.muted{color:#777}.facts{display:flex;flex-wrap:wrap;gap:6px}
.fact{border:1px solid #ddd;border-radius:4px;padding:4px 8px;min-width:110px}
.fact span{display:block;font-size:11px;color:#666}.row{display:flex;flex-wrap:wrap;gap:16px;
align-items:flex-start;margin-top:10px}
table{border-collapse:collapse;font-size:13px}caption{text-align:left;font-weight:600}
td,th{border-bottom:1px solid #eee;padding:2px 8px;text-align:left}
figure{margin:0}figcaption{font-weight:600;font-size:13px}
svg rect{fill:#4a7bd0}svg line{stroke:#999}svg text{font-size:10px;fill:#555}
#controls{display:flex;gap:8px;align-items:center;margin-bottom:8px}
#search{flex:1;padding:4px 8px;font-size:14px}
.prompt{border:1px solid #ddd;border-radius:4px;margin:4px 0}
.prompt-head{display:flex;gap:10px;padding:4px 8px;cursor:pointer}
.prompt-head:hover{background:#f4f7fc}.pid{font-family:monospace;white-space:nowrap}
.ptext{flex:1;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.tag{font-size:12px;white-space:nowrap;color:#555}.bad{color:#b00020}
.prompt-body{padding:4px 8px 8px;border-top:1px solid #eee}
.prompt-full{white-space:pre-wrap;background:#fafafa;padding:6px;margin:0 0 6px}
ul.tree{list-style:none;margin:0;padding-left:18px}ul.tree.top{padding-left:0}
.node-head{cursor:pointer;padding:1px 4px;border-radius:3px;font-size:13px}
.node-head:hover{background:#eef}.best-path>.node-head{background:#fff4c2}
.best>.node-head{background:#ffd84d;font-weight:600}
.failed>.node-head{color:#b00020}.failed>.node-head::before{content:"\\2716 "}
.node-text{white-space:pre-wrap;background:#f6f6f6;border-left:3px solid #ccc;margin:2px 0 4px;
padding:4px 8px;font-size:13px}.node-error{color:#b00020;white-space:pre-wrap;margin:2px 0}
"""

PAGE_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("toa-data").textContent);
  var ACTIONS = ["fresh", "refine", "aggregate"];
  var PAGE = 50;
  var prompts = data.prompts, agents = data.agents;
  var shown = prompts, page = 0;
  var list = document.getElementById("prompt-list");
  var info = document.getElementById("page-info");
  var search = document.getElementById("search");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function clickable(e, act) {
    e.tabIndex = 0;
    e.setAttribute("role", "button");
    e.addEventListener("click", act);
    e.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); act(); }
    });
  }
  function v(a, i) { return a.length > i && a[i] !== null ? a[i] : null; }
  function reward(r) { return r === null ? "-" : (Math.round(r * 10000) / 10000).toString(); }

  function nodeInfo(n) {
    var agent = agents[v(n, 3)] || "?", action = ACTIONS[v(n, 4)] || "?";
    var pt = v(n, 9), ct = v(n, 10), parts = ["#" + n[0], agent, action, "depth " + v(n, 2)];
    parts.push("reward " + reward(v(n, 5)));
    if (pt !== null || ct !== null) parts.push("tokens " + (pt || 0) + "+" + (ct || 0));
    if (v(n, 11)) parts.push("aggregates #" + v(n, 11).join(", #"));
    if (v(n, 7) !== null) parts.push("generation failed");
    else if (v(n, 8) !== null) parts.push("score failed");
    return parts.join(" \u00b7 ");
  }

  function toggleNode(li, n) {
    var body = li.querySelector(":scope > .node-body");
    if (body) { body.hidden = !body.hidden; return; }
    body = el("div", "node-body");
    if (v(n, 7) !== null) body.appendChild(el("div", "node-error", "generation failed: " + n[7]));
    if (v(n, 8) !== null) body.appendChild(el("div", "node-error", "score failed: " + n[8]));
    var text = v(n, 6);
    body.appendChild(el("div", "node-text", text === null ? "(no text)" : text));
    li.insertBefore(body, li.querySelector(":scope > ul"));
  }

  function buildTree(p) {
    var nodes = v(p, 7) || [], best = v(p, 3), byId = {}, kids = {}, path = {};
    nodes.forEach(function (n) { byId[n[0]] = n; });
    nodes.forEach(function (n) {
      var parent = v(n, 1);
      if (parent === null || !(parent in byId)) parent = -1;
      (kids[parent] = kids[parent] || []).push(n);
    });
    for (var id = best, guard = 0; id !== null && id in byId && guard < 100000; guard++) {
      path[id] = true;
      var up = v(byId[id], 1);
      id = up === null || up < 0 ? null : up;
    }
    function grow(parent, ul) {
      (kids[parent] || []).forEach(function (n) {
        var li = el("li", "node");
        li.dataset.node = n[0];
        if (path[n[0]]) li.classList.add("best-path");
        if (n[0] === best) li.classList.add("best");
        if (v(n, 7) !== null || v(n, 8) !== null) li.classList.add("failed");
        var head = el("div", "node-head", nodeInfo(n));
        clickable(head, function () { toggleNode(li, n); });
        li.appendChild(head);
        if (kids[n[0]]) { var sub = el("ul", "tree"); grow(n[0], sub); li.appendChild(sub); }
        ul.appendChild(li);
      });
    }
    var top = el("ul", "tree top");
    grow(-1, top);
    if (!nodes.length) top.appendChild(el("li", "muted", "no responses"));
    return top;
  }

  function togglePrompt(box, p) {
    var body = box.querySelector(".prompt-body");
    if (body) { body.remove(); return; }
    body = el("div", "prompt-body");
    body.appendChild(el("pre", "prompt-full", p[1]));
    if (v(p, 6) !== null) body.appendChild(el("div", "node-error", "search failed: " + p[6]));
    body.appendChild(buildTree(p));
    box.appendChild(body);
  }

  function row(p) {
    var box = el("div", "prompt"), head = el("div", "prompt-head");
    box.dataset.id = p[0];
    head.appendChild(el("span", "pid", p[0]));
    head.appendChild(el("span", "ptext", p[1]));
    var nodes = v(p, 7) || [], failed = v(p, 5) || 0;
    head.appendChild(el("span", "tag", "best " + reward(v(p, 4))));
    head.appendChild(el("span", "tag", nodes.length + " nodes"));
    if (failed) head.appendChild(el("span", "tag bad", failed + " failed"));
    if (p[2] !== "done") head.appendChild(el("span", "tag bad", p[2]));
    clickable(head, function () { togglePrompt(box, p); });
    box.appendChild(head);
    return box;
  }

  function draw() {
    var pages = Math.max(1, Math.ceil(shown.length / PAGE));
    page = Math.min(Math.max(page, 0), pages - 1);
    list.replaceChildren();
    shown.slice(page * PAGE, (page + 1) * PAGE).forEach(function (p) { list.appendChild(row(p)); });
    info.textContent = shown.length + " of " + prompts.length + " prompts \u00b7 page " +
      (page + 1) + " of " + pages;
  }

  var lowered = null;
  search.addEventListener("input", function () {
    var q = search.value.trim().toLowerCase();
    if (!q) { shown = prompts; }
    else {
      if (lowered === null) {
        lowered = prompts.map(function (p) { return (p[0] + "\n" + p[1]).toLowerCase(); });
      }
      shown = prompts.filter(function (p, i) { return lowered[i].indexOf(q) !== -1; });
    }
    page = 0;
    draw();
  });
  document.getElementById("prev").addEventListener("click", function () { page--; draw(); });
  document.getElementById("next").addEventListener("click", function () { page++; draw(); });
  draw();
})();
"""
