"""visualize: the SVG, HTML and DOT pictures of a graph and its groups.

The pictures are checked as data, not pixels: one element per IR node, one band per removal
structure with its parent, the hierarchy nested as the groups are, per-node channel-group counts
equal to the search space's, a standalone HTML page, and byte-identical output for the same IR.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

import asgnas_ir as ai
from asgnas_ir.errors import AsgnasError, SpecError
from asgnas_ir.examples.supernets import SUPERNETS
from asgnas_ir.passes.visualize import render, write_visualization
from asgnas_ir.passes.visualize import scene as scene_module
from tests.models.resnet import resnet_basic

SVG_NS = "{http://www.w3.org/2000/svg}"
_ALLOWED_ELEMENTS = {"svg", "g", "rect", "path", "text", "title", "defs", "marker", "line"}


@pytest.fixture(scope="module")
def unets() -> ai.Graph:
    torch.manual_seed(0)
    net = SUPERNETS["stacked_unets"](num_classes=10, in_channels=1).eval()
    return ai.compile(net, torch.randn(1, 1, 8, 8))


@pytest.fixture(scope="module")
def resnet() -> ai.Graph:
    return ai.compile(resnet_basic(), torch.randn(1, 3, 16, 16))


def parse_svg(text: str) -> ET.Element:
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == f"{SVG_NS}svg"
    return root


def with_attr(root: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in root.iter() if name in el.attrib]


def test_svg_has_one_element_per_node_input_and_output(resnet: ai.Graph) -> None:
    root = parse_svg(render(resnet, "svg").text)
    drawn = [el.get("data-node") for el in with_attr(root, "data-node")]
    assert sorted(drawn) == sorted(n.id for n in resnet.nodes)  # each node exactly once
    ios = {(el.get("data-io"), el.get("data-value")) for el in with_attr(root, "data-io")}
    assert ios == {("input", v) for v in resnet.inputs} | {("output", v) for v in resnet.outputs}
    # Every data dependency is an edge, and no edge points at something not drawn.
    edges = {(el.get("data-from"), el.get("data-to")) for el in root.iter(f"{SVG_NS}path") if el.get("class") == "edge"}
    producer = {v: f"input:{v}" for v in resnet.inputs}
    expected = set()
    for node in resnet.nodes:
        expected |= {(producer[v], node.id) for v in node.inputs if v in producer}
        producer.update({v: node.id for v in node.outputs})
    expected |= {(producer[v], f"output:{v}") for v in resnet.outputs}
    assert edges == expected


def test_every_removal_structure_is_drawn_with_its_parent_and_its_own_colour(unets: ai.Graph) -> None:
    space = ai.search_space(unets, mode="both")
    operators = {g.id: g for g in space.groups if g.kind == "operator"}
    assert any(g.parent is not None for g in operators.values())  # the example has a hierarchy to show
    drawn = render(unets, "svg")
    assert drawn.mode == "both" and drawn.note == ""
    root = parse_svg(drawn.text)
    bands = {int(el.get("data-group")): el for el in root.iter(f"{SVG_NS}g") if el.get("class") == "opgroup"}
    assert set(bands) == set(operators)
    for gid, band in bands.items():
        parent = operators[gid].parent
        assert band.get("data-parent") == ("" if parent is None else str(parent))
    colours = [band.get("data-color") for band in bands.values()]
    assert len(set(colours)) == len(colours) and all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours)
    # Every node of a structure says so, and its halo is drawn in the structure's colour.
    node_group = {el.get("data-node"): el.get("data-opgroup") for el in with_attr(root, "data-node")}
    for gid, group in operators.items():
        assert all(node_group[n] == str(gid) for n in group.nodes)
        assert len([r for r in bands[gid].iter(f"{SVG_NS}rect") if r.get("fill") == bands[gid].get("data-color")]) == len(group.nodes)


def test_hierarchy_panel_nests_children_inside_their_parents(unets: ai.Graph) -> None:
    space = ai.search_space(unets, mode="both")
    parents = {g.id: g.parent for g in space.groups if g.kind == "operator"}
    root = parse_svg(render(unets, "svg").text)
    seen: dict[int, int | None] = {}

    def walk(element: ET.Element, enclosing: int | None) -> None:
        for child in element:
            if child.get("class") == "tree-item":
                gid = int(child.get("data-group"))
                seen[gid] = enclosing
                walk(child, gid)
            else:
                walk(child, enclosing)

    walk(root, None)
    assert seen == parents
    assert max(_depth(g, parents) for g in parents) >= 2  # 226 ⊃ 225 ⊃ 224: three levels drawn


def _depth(gid: int, parents: dict[int, int | None]) -> int:
    depth = 0
    while parents[gid] is not None:
        gid, depth = parents[gid], depth + 1
    return depth


def test_channel_group_counts_per_node_match_the_search_space(resnet: ai.Graph) -> None:
    space = ai.search_space(resnet, mode="prune")
    expected = Counter(n for g in space.groups for n in g.nodes)
    root = parse_svg(render(resnet, "svg", mode="prune").text)
    counts = {el.get("data-node"): int(el.get("data-channel-groups")) for el in with_attr(root, "data-node")}
    assert counts == {n.id: expected.get(n.id, 0) for n in resnet.nodes}
    assert not [el for el in root.iter(f"{SVG_NS}g") if el.get("class") == "opgroup"]  # prune: no removal structures
    assert root.get("data-mode") == "prune"


def test_erase_mode_draws_structures_without_channel_badges(unets: ai.Graph) -> None:
    root = parse_svg(render(unets, "svg", mode="erase").text)
    assert root.get("data-mode") == "erase"
    assert {el.get("data-channel-groups") for el in with_attr(root, "data-node")} == {"0"}
    assert len([el for el in root.iter(f"{SVG_NS}g") if el.get("class") == "opgroup"]) == 6


class Wide(nn.Module):
    """One hidden layer of 300 units: 300 channel groups touching the same two nodes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 300)
        self.fc2 = nn.Linear(300, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_many_channel_groups_are_aggregated_not_listed() -> None:
    graph = ai.compile(Wide().eval(), torch.randn(2, 8))
    drawn = render(graph, "svg", mode="prune")
    root = parse_svg(drawn.text)
    fc1 = next(el for el in with_attr(root, "data-node") if el.get("data-node") == "fc1")
    assert fc1.get("data-channel-groups") == "300"
    assert [t.text for t in fc1.iter(f"{SVG_NS}text")][-1] == "300"  # the badge
    tooltip = fc1.find(f"{SVG_NS}title").text
    assert "300 channel groups: 0, 1, 2" in tooltip and tooltip.rstrip().endswith("…")
    assert len(drawn.scene.top_channel_groups) == scene_module.TOP_CHANNEL_GROUPS < 300
    page = render(graph, "html", mode="prune").text
    payload = json.loads(_data_block(page))
    assert len(payload["nodes"]["fc1"]["channel_ids"]) == scene_module.CHANNEL_IDS_PER_NODE
    assert len(payload["channels"]) == scene_module.TOP_CHANNEL_GROUPS


def _data_block(page: str) -> str:
    match = re.search(r'<script type="application/json" id="viz-data">(.*?)</script>', page, re.S)
    assert match is not None
    return match.group(1)


def _inline_svg(page: str) -> str:
    start, end = page.index("<svg"), page.index("</svg>") + len("</svg>")
    return page[start:end].replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)


def test_html_is_one_standalone_page_with_the_svg_and_node_details(unets: ai.Graph) -> None:
    page = render(unets, "html").text
    assert page.startswith("<!DOCTYPE html>")
    for external in ("http:", "https:", "<link", " src=", "@import", "url(http"):
        assert external not in page
    root = parse_svg(_inline_svg(page))
    assert sorted(el.get("data-node") for el in with_attr(root, "data-node")) == sorted(n.id for n in unets.nodes)
    payload = json.loads(_data_block(page))
    assert set(payload["nodes"]) == {n.id for n in unets.nodes}
    conv = payload["nodes"]["stem_0"]
    assert conv["op"] == "conv" and conv["source"] == "stem.0" and conv["outputs"][0][1].startswith("f32[N,16,8,8]")
    assert ["weight", "stem.0.weight", "16x1x3x3", "stem.0.weight"] in conv["params"]
    space = ai.search_space(unets, mode="both")
    for group in (g for g in space.groups if g.kind == "operator"):
        entry = payload["groups"][str(group.id)]
        assert entry["parent"] == group.parent and entry["nodes"] == group.nodes
        assert f'<li data-group="{group.id}">' in page  # the sidebar's hierarchy list


def test_names_with_markup_are_escaped(unets: ai.Graph) -> None:
    graph = unets.model_copy(deep=True)
    graph.nodes[0].source = '</script><b class="x">&amp'
    for fmt in ("svg", "html"):
        assert "</script><b" not in render(graph, fmt).text
    assert '\\n</script><b class=\\"x\\">&amp\\n' in render(graph, "dot").text  # DOT: quotes escaped
    parse_svg(render(graph, "svg").text)
    json.loads(_data_block(render(graph, "html").text))


def _strict_svg_check(text: str, node_ids: set[str]) -> None:
    """What a renderer needs: known elements only, finite numbers, boxes inside the canvas and
    apart from each other, and every `url(#id)` pointing at a defined id."""
    root = parse_svg(text)
    width, height = float(root.get("width")), float(root.get("height"))
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    for el in root.iter():
        assert el.tag.startswith(SVG_NS) and el.tag[len(SVG_NS):] in _ALLOWED_ELEMENTS, el.tag
        for key in ("x", "y", "width", "height", "x1", "x2", "y1", "y2", "rx"):
            if key in el.attrib:
                assert math.isfinite(float(el.get(key)))
        for ref in re.findall(r"url\(#([^)]+)\)", " ".join(el.attrib.values())):
            assert ref in ids
        if "d" in el.attrib:
            assert re.fullmatch(r"[MLCz0-9., -]+", el.get("d")), el.get("d")
    boxes = []
    for el in with_attr(root, "data-node"):
        tx, ty = map(float, re.fullmatch(r"translate\(([-0-9.]+),([-0-9.]+)\)", el.get("transform")).groups())
        rect = el.find(f"{SVG_NS}rect")
        w, h = float(rect.get("width")), float(rect.get("height"))
        assert tx >= 0 and tx + w <= width and ty >= 0 and ty + h <= height
        boxes.append((tx, ty, tx + w, ty + h))
    assert {el.get("data-node") for el in with_attr(root, "data-node")} == node_ids
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


def test_svg_is_strictly_valid(unets: ai.Graph, resnet: ai.Graph) -> None:
    for graph in (unets, resnet):
        _strict_svg_check(render(graph, "svg").text, {n.id for n in graph.nodes})


@pytest.mark.slow
def test_html_page_runs_in_a_headless_browser(unets: ai.Graph, tmp_path: Path) -> None:
    """Chromium loads the page, its script runs, and a #node= link selects that node.

    Without chromium on the machine, the page's inline SVG gets the strict structural check instead.
    """
    page = tmp_path / "graph.html"
    write_visualization(unets, page)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        _strict_svg_check(_inline_svg(page.read_text()), {n.id for n in unets.nodes})
        return
    result = subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom", f"{page.as_uri()}#node=unet1_enc2_0",
        ],
        capture_output=True, text=True, timeout=120,
    )
    dom = result.stdout
    assert 'data-ready="yes"' in dom, result.stderr[-2000:]
    assert {n.id for n in unets.nodes} <= set(re.findall(r'data-node="([^"]+)"', dom))
    selected = re.findall(r'<g class="node hl" data-node="([^"]+)"', dom)
    assert selected == ["unet1_enc2_0"]
    info = re.search(r'<div id="info".*?</div>', dom, re.S).group(0)
    assert "unet1.enc2.0" in info and "1,32,4,4" in info  # the source path and output shape


def test_dot_nests_child_clusters_inside_their_parents(unets: ai.Graph) -> None:
    text = render(unets, "dot").text
    assert text.startswith('digraph "StackedUnets" {') and text.rstrip().endswith("}")
    stack: list[int] = []
    enclosing: dict[int, int | None] = {}
    for line in text.splitlines():
        opened = re.match(r"\s*subgraph cluster_g(\d+) \{", line)
        if opened:
            gid = int(opened.group(1))
            enclosing[gid] = stack[-1] if stack else None
            stack.append(gid)
        elif line.strip() == "}" and stack:
            stack.pop()
    space = ai.search_space(unets, mode="both")
    assert enclosing == {g.id: g.parent for g in space.groups if g.kind == "operator"}
    assert len(re.findall(r" -> ", text)) == len(render(unets, "svg").scene.edges)


def test_same_ir_gives_the_same_bytes(unets: ai.Graph, tmp_path: Path) -> None:
    unets.save(tmp_path / "g.json")
    again = ai.load(tmp_path / "g.json")
    for fmt in ("svg", "html", "dot"):
        assert render(unets, fmt).text == render(again, fmt).text


def test_suffix_picks_the_format_and_others_are_refused(unets: ai.Graph, tmp_path: Path) -> None:
    assert write_visualization(unets, tmp_path / "a" / "g.htm").fmt == "html"
    with pytest.raises(SpecError, match=r"'\.png' is not one of \.svg .*\.html .*\.dot"):
        write_visualization(unets, tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()
    with pytest.raises(SpecError, match=r"'\(none\)' is not one of"):
        write_visualization(unets, tmp_path / "graph")


def test_default_mode_falls_back_to_prune_and_says_so(unets: ai.Graph, monkeypatch: pytest.MonkeyPatch) -> None:
    real = scene_module.analysis

    def erase_fails(name: str, graph: ai.Graph, **options: object) -> object:
        if options.get("mode") == "both":
            raise AsgnasError("segment analysis refused node 'x'")
        return real(name, graph, **options)

    monkeypatch.setattr(scene_module, "analysis", erase_fails)
    drawn = render(unets, "svg")
    assert drawn.mode == "prune" and "'both' does not work" in drawn.note and "node 'x'" in drawn.note
    assert "showing 'prune'" in drawn.text  # the note is in the picture, too
    with pytest.raises(AsgnasError, match="node 'x'"):
        render(unets, "svg", mode="both")  # an explicit mode is not second-guessed


def test_visualize_pass_writes_a_folder_like_codegen(unets: ai.Graph, tmp_path: Path) -> None:
    assert "visualize" in {p.name for p in ai.list_passes()}
    written = ai.run_pass("visualize", unets, out_dir=tmp_path / "viz", mode="erase", formats=["svg", "dot"])
    assert written == [tmp_path / "viz" / "graph.svg", tmp_path / "viz" / "graph.dot"]
    assert parse_svg(written[0].read_text()).get("data-mode") == "erase"
