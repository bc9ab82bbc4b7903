"""visualize: draw a graph with its channel groups and removal structures (SVG, HTML page, DOT).

`render(graph, fmt, mode)` returns the text; `write_visualization(graph, path, mode)` picks the
format from the file suffix (what `asgnas viz` calls). The registered pass writes into a folder
like the codegen passes do, so `asgnas run visualize IR.json -o DIR` gives `graph.svg`,
`graph.html` and `graph.dot` there.

The same graph and mode always give the same bytes: nothing depends on hash order, time or
the machine's fonts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asgnas_ir.errors import SpecError
from asgnas_ir.ir.graph import Graph
from asgnas_ir.pass_manager import Pass, register_pass
from asgnas_ir.passes.visualize.dot import render_dot
from asgnas_ir.passes.visualize.html import render_html
from asgnas_ir.passes.visualize.scene import Scene, build_scene, resolve_space
from asgnas_ir.passes.visualize.svg import render_svg

FORMATS = ("svg", "html", "dot")


@dataclass(frozen=True)
class Rendering:
    """A drawn picture: its text, the search-space mode shown, and a note when the default fell back."""

    text: str
    fmt: str
    mode: str
    note: str
    scene: Scene


def format_for(path: str | Path) -> str:
    """The format a file name asks for, from its suffix; anything else is a SpecError."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("htm",):
        suffix = "html"
    if suffix not in FORMATS:
        raise SpecError(
            f"cannot draw to '{path}': the file suffix picks the format, and "
            f"'{Path(path).suffix or '(none)'}' is not one of .svg (picture), .html (interactive page) or .dot (Graphviz text)"
        )
    return suffix


def render(graph: Graph, fmt: str = "svg", mode: str | None = None) -> Rendering:
    """Draw `graph` as `fmt` (svg, html or dot) with the `mode` search space (None: both, else prune)."""
    if fmt not in FORMATS:
        raise SpecError(f"visualize: format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    space, note = resolve_space(graph, mode)
    scene = build_scene(graph, space, note)
    text = {"svg": render_svg, "html": render_html, "dot": render_dot}[fmt](scene)
    return Rendering(text, fmt, space.mode, note, scene)


def write_visualization(graph: Graph, path: str | Path, mode: str | None = None) -> Rendering:
    """Write the picture of `graph` to `path`, in the format its suffix names."""
    fmt = format_for(path)
    rendering = render(graph, fmt, mode)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rendering.text, encoding="utf-8")
    return rendering


@register_pass
class Visualize(Pass):
    name = "visualize"
    description = "Draw the graph with channel groups and removal structures coloured (graph.svg, graph.html, graph.dot)."
    kind = "codegen"

    def run(self, graph: Graph, out_dir: str | Path = "viz", mode: str | None = None, formats: list[str] | None = None) -> list[Path]:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for fmt in formats or FORMATS:
            rendering = render(graph, fmt, mode)
            path = folder / f"graph.{fmt}"
            path.write_text(rendering.text, encoding="utf-8")
            written.append(path)
        return written
