"""visualize: pictures of a graph with its channel groups and removal structures (SVG, HTML, DOT)."""

from asgnas_ir.passes.visualize.visualize import FORMATS, Rendering, format_for, render, write_visualization

__all__ = ["FORMATS", "Rendering", "format_for", "render", "write_visualization"]
