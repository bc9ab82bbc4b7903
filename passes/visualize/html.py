"""A Scene as one standalone HTML page: the SVG inline, a sidebar, and a little inline script.

Nothing is fetched: no external scripts, stylesheets, fonts or images, so the file works offline
and can be attached to a bug report. The sidebar has the legend, toggles (removal-structure bands,
channel-group heat), a zoom slider, a search box, the node details (op, shapes, source path,
params, its removal structure and channel groups) shown on hover and pinned on click, the
removal-structure hierarchy as a nested list (click: highlight the group and everything that dies
with it; checkbox: hide its band), and the largest channel groups (click: highlight their nodes).
`page.html#node=ID` or `#group=N` opens with that node or group selected; once the script has set
everything up it marks `<body data-ready="yes">` (the headless-browser test looks for both).

The per-node details travel as one JSON block (`<script type="application/json">`, with `<`
escaped so no string can close the block); the script only reads it and the SVG's data attributes.
"""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape

from asgnas_ir.passes.visualize.scene import OperatorGroupView, Scene
from asgnas_ir.passes.visualize.svg import compact, heat, render_svg, scene_layout

_CSS = """
body { margin: 0; display: flex; height: 100vh; font: 13px system-ui, sans-serif; color: #222; }
#canvas { flex: 1; overflow: auto; background: #fafafa; }
#side { width: 400px; overflow: auto; border-left: 1px solid #ccc; padding: 10px 14px; box-sizing: border-box; }
h1 { font-size: 16px; margin: 4px 0; } h2 { font-size: 13px; margin: 14px 0 4px; }
.note { color: #a03000; } .muted { color: #666; }
.sw { display: inline-block; width: 11px; height: 11px; border: 1px solid #333; border-radius: 2px; vertical-align: -1px; margin-right: 4px; }
ul.tree, ul.tree ul { list-style: none; padding-left: 14px; margin: 0; } ul.tree { padding-left: 0; }
.tree span.label, #channels li { cursor: pointer; } .tree span.label:hover, #channels li:hover { text-decoration: underline; }
#channels { padding-left: 18px; margin: 0; font-family: monospace; font-size: 12px; }
#info table { border-collapse: collapse; font-family: monospace; font-size: 12px; }
#info td { padding: 1px 6px 1px 0; vertical-align: top; } #info td:first-child { color: #666; }
svg .node, svg .io { cursor: pointer; }
svg.focus .node:not(.hl), svg.focus .io { opacity: 0.25; }
svg.focus .opgroup:not(.hl) { opacity: 0.12; }
svg .node.hl > rect { stroke: #d62728; stroke-width: 3; }
svg.no-bands #opgroups { display: none; }
svg.no-heat .node > rect { fill: #ffffff; } svg.no-heat .badge { display: none; }
"""

_JS = """
(function () {
  const data = JSON.parse(document.getElementById('viz-data').textContent);
  const svg = document.querySelector('#canvas svg');
  const info = document.getElementById('info');
  const baseW = svg.width.baseVal.value, baseH = svg.height.baseVal.value;
  const nodeEls = {};
  svg.querySelectorAll('[data-node]').forEach(function (el) { nodeEls[el.getAttribute('data-node')] = el; });
  let pinned = false;
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]; });
  }
  function row(k, v) { return '<tr><td>' + esc(k) + '</td><td>' + v + '</td></tr>'; }
  function showNode(id) {
    const n = data.nodes[id];
    if (!n) return;
    let h = '<table>' + row('node', '<b>' + esc(n.id) + '</b>') + row('op', esc(n.op)) + row('source', esc(n.source));
    Object.keys(n.attrs).forEach(function (k) { h += row(k, esc(n.attrs[k])); });
    n.inputs.forEach(function (v) { h += row('input', esc(v[0] + ': ' + v[1])); });
    n.outputs.forEach(function (v) { h += row('output', esc(v[0] + ': ' + v[1])); });
    n.params.forEach(function (p) { h += row(p[0], esc(p[1] + ' [' + p[2] + '] \\u2190 ' + p[3])); });
    if (n.opgroup !== null) {
      const g = data.groups[n.opgroup];
      h += row('removal', '<span class="sw" style="background:' + g.colour + '"></span>#' + n.opgroup +
               (g.parent !== null ? ' \\u2282 #' + g.parent : ''));
    }
    if (n.channel_count) {
      h += row('channel groups', n.channel_count + ': ' + esc(n.channel_ids.join(', ')) + (n.channel_count > n.channel_ids.length ? ' \\u2026' : ''));
    }
    info.innerHTML = h + '</table>';
  }
  function clearMarks() {
    svg.classList.remove('focus');
    svg.querySelectorAll('.hl').forEach(function (el) { el.classList.remove('hl'); });
  }
  function highlight(nodeIds, groupIds) {
    clearMarks();
    svg.classList.add('focus');
    nodeIds.forEach(function (id) { if (nodeEls[id]) nodeEls[id].classList.add('hl'); });
    groupIds.forEach(function (g) {
      const el = svg.querySelector('.opgroup[data-group="' + g + '"]');
      if (el) el.classList.add('hl');
    });
  }
  function descendants(g) {
    let out = [g];
    data.groups[g].children.forEach(function (c) { out = out.concat(descendants(c)); });
    return out;
  }
  function selectGroup(g) {
    const all = descendants(Number(g));
    let nodes = [];
    all.forEach(function (id) { nodes = nodes.concat(data.groups[id].nodes); });
    highlight(nodes, all);
    const grp = data.groups[g];
    info.innerHTML = '<b>removal structure #' + g + '</b>' + (grp.parent !== null ? ' (inside #' + grp.parent + ')' : '') +
      '<br>' + grp.nodes.length + ' nodes, ' + grp.params.toLocaleString() + ' params, ' + grp.flops.toLocaleString() + ' FLOPs' +
      (all.length > 1 ? '<br>removing it also removes #' + all.slice(1).join(', #') : '') +
      '<br><span class="muted">' + esc(grp.nodes.join(', ')) + '</span>';
    pinned = true;
  }
  svg.addEventListener('mouseover', function (e) {
    const el = e.target.closest('[data-node]');
    if (el && !pinned) showNode(el.getAttribute('data-node'));
  });
  svg.addEventListener('click', function (e) {
    const el = e.target.closest('[data-node]');
    if (el) { pinned = true; showNode(el.getAttribute('data-node')); highlight([el.getAttribute('data-node')], []); return; }
    const g = e.target.closest('.opgroup');
    if (g) { selectGroup(g.getAttribute('data-group')); return; }
    pinned = false; clearMarks();
  });
  document.querySelectorAll('.tree span.label').forEach(function (el) {
    el.addEventListener('click', function () { selectGroup(el.parentNode.getAttribute('data-group')); });
  });
  document.querySelectorAll('.tree input[type=checkbox]').forEach(function (box) {
    box.addEventListener('change', function () {
      const el = svg.querySelector('.opgroup[data-group="' + box.parentNode.getAttribute('data-group') + '"]');
      if (el) el.style.display = box.checked ? '' : 'none';
    });
  });
  document.querySelectorAll('#channels li').forEach(function (li) {
    li.addEventListener('click', function () {
      const c = data.channels[li.getAttribute('data-index')];
      highlight(c.nodes, []);
      pinned = true;
      info.innerHTML = '<b>channel group #' + c.id + '</b>' + (c.parent !== null ? ' (inside removal structure #' + c.parent + ')' : '') +
        '<br>' + c.channels + ' channels, ' + c.params.toLocaleString() + ' params, ' + c.flops.toLocaleString() +
        ' FLOPs<br><span class="muted">' + esc(c.nodes.join(', ')) + '</span>';
    });
  });
  document.getElementById('bands').addEventListener('change', function (e) { svg.classList.toggle('no-bands', !e.target.checked); });
  document.getElementById('heat').addEventListener('change', function (e) { svg.classList.toggle('no-heat', !e.target.checked); });
  document.getElementById('zoom').addEventListener('input', function (e) {
    const z = Number(e.target.value);
    svg.setAttribute('width', baseW * z); svg.setAttribute('height', baseH * z);
  });
  document.getElementById('search').addEventListener('input', function (e) {
    const q = e.target.value.trim().toLowerCase();
    if (!q) { clearMarks(); return; }
    const hits = Object.keys(data.nodes).filter(function (id) {
      return id.toLowerCase().includes(q) || data.nodes[id].source.toLowerCase().includes(q);
    });
    highlight(hits, []);
    if (hits.length && nodeEls[hits[0]]) nodeEls[hits[0]].scrollIntoView({block: 'center', inline: 'center'});
  });
  // Deep links: page.html#node=ID or #group=N opens with that node or removal structure selected.
  const hash = decodeURIComponent(location.hash.slice(1));
  if (hash.startsWith('node=') && data.nodes[hash.slice(5)]) {
    const id = hash.slice(5);
    pinned = true; showNode(id); highlight([id], []);
    nodeEls[id].scrollIntoView({block: 'center', inline: 'center'});
  } else if (hash.startsWith('group=') && data.groups[hash.slice(6)]) {
    selectGroup(hash.slice(6));
  }
  document.body.setAttribute('data-ready', 'yes');
})();
"""


def _payload(scene: Scene) -> dict[str, Any]:
    nodes = {
        n.id: {**n.info, "opgroup": n.op_group, "channel_count": n.channel_count, "channel_ids": n.channel_ids}
        for n in scene.nodes
        if n.kind == "op"
    }
    groups = {
        str(g.id): {
            "parent": g.parent, "nodes": g.nodes, "children": sorted(g.children), "colour": g.colour,
            "params": g.params, "flops": g.flops, "channel_children": g.channel_children,
        }
        for g in scene.operator_groups
    }
    channels = [
        {"id": c.id, "parent": c.parent, "nodes": c.nodes, "channels": c.channels, "params": c.params, "flops": c.flops}
        for c in scene.top_channel_groups
    ]
    return {"nodes": nodes, "groups": groups, "channels": channels}


def _script_json(payload: dict[str, Any]) -> str:
    # `<` as \\u003c: a source path like "</script>" must not end the data block early.
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).replace("<", "\\u003c")


def _tree(scene: Scene) -> list[str]:
    views = {g.id: g for g in scene.operator_groups}

    def item(group: OperatorGroupView) -> list[str]:
        extra = f", +{group.channel_children} channel groups" if group.channel_children else ""
        out = [
            f'<li data-group="{group.id}"><input type="checkbox" checked title="show this band"> '
            f'<span class="sw" style="background:{group.colour}"></span><span class="label">#{group.id} '
            f"{escape(group.nodes[0] if group.nodes else '?')}</span> "
            f'<span class="muted">({len(group.nodes)} nodes, {compact(group.params)} params{extra})</span>'
        ]
        if group.children:
            out.append("<ul>")
            for child in sorted(group.children):
                out.extend(item(views[child]))
            out.append("</ul>")
        out.append("</li>")
        return out

    lines = ['<ul class="tree">']
    for root in scene.roots():
        lines.extend(item(root))
    lines.append("</ul>")
    return lines


def render_html(scene: Scene) -> str:
    layout = scene_layout(scene)
    svg = render_svg(scene, layout, standalone=False, panel=False)
    ops = sum(1 for n in scene.nodes if n.kind == "op")
    most = scene.max_channel_count
    side = [
        f"<h1>{escape(scene.name)}</h1>",
        f'<div class="muted">mode {scene.mode} · {ops} nodes · {len(scene.operator_groups)} removal structures · '
        f"{scene.channel_group_count:,} channel groups</div>",
    ]
    if scene.note:
        side.append(f'<p class="note">{escape(scene.note)}</p>')
    side += [
        "<h2>legend</h2>",
        f'<div><span class="sw" style="background:{heat(0, most)}"></span>&#8230;'
        f'<span class="sw" style="background:{heat(most, most)}"></span> channel groups touching a node '
        f"(0 &#8230; {most}; the badge shows the count)</div>",
        "<div>tinted band: one removal structure; <b>#child &#8834; #parent</b>: removing the parent makes the child dead</div>",
        '<div><label><input type="checkbox" id="bands" checked> removal structures</label> '
        '<label><input type="checkbox" id="heat" checked> channel-group heat</label></div>',
        '<div><label>zoom <input type="range" id="zoom" min="0.2" max="2" step="0.05" value="1"></label></div>',
        '<div><input type="search" id="search" placeholder="find node by id or source" size="32"></div>',
        "<h2>details</h2>",
        '<div id="info" class="muted">hover a node; click to pin, click the background to clear</div>',
    ]
    if scene.operator_groups:
        side.append("<h2>removal structures</h2>")
        side.extend(_tree(scene))
    if scene.top_channel_groups:
        side.append(f"<h2>largest channel groups (top {len(scene.top_channel_groups)} of {scene.channel_group_count:,})</h2>")
        side.append('<ol id="channels">')
        for index, c in enumerate(scene.top_channel_groups):
            side.append(f'<li data-index="{index}" data-group="{c.id}">#{c.id}: {compact(c.params)} params, {len(c.nodes)} nodes</li>')
        side.append("</ol>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(scene.name)}: asgnas viz</title>",
            f"<style>{_CSS}</style></head><body>",
            '<div id="canvas">',
            svg,
            "</div>",
            '<div id="side">',
            *side,
            "</div>",
            f'<script type="application/json" id="viz-data">{_script_json(_payload(scene))}</script>',
            f"<script>{_JS}</script>",
            "</body></html>",
        ]
    ) + "\n"
