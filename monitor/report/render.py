"""The report's blocks written out as Markdown and as one self-contained HTML page.

HTML: every text escaped with `html.escape`; charts are plotly figures with plotly.js inlined
once (`include_plotlyjs=True` on the first), so the page opens offline and asks no server for
anything. Markdown: text escaped too (Markdown passes raw HTML through), table cells with `|`
escaped; the pie as a mermaid block, the other charts left to the HTML page.
"""

from __future__ import annotations

import html

from monitor.report.content import Block, Chart, Heading, Table, Text


def _md(text: str) -> str:
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + _md(block.text), ""]
        elif isinstance(block, Text):
            out += [("**⚠** " if block.warning else "") + _md(block.text), ""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(_md(h) for h in block.header) + " |")
            out.append("|" + " -- |" * len(block.header))
            for i, row in enumerate(block.rows):
                cells = [_md(c) for c in row]
                if i in block.flagged:
                    cells = [f"**{c}**" if c else c for c in cells[:1]] + cells[1:-1] + [f"**{cells[-1]} ⚠**"]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
        elif isinstance(block, Chart) and block.kind == "pie":
            labels, values = block.lines["days"]
            out += ["```mermaid", "pie showData", f"    title {_md(block.title)}"]
            out += [f'    "{_md(label)}": {value:.2f}' for label, value in zip(labels, values)]
            out += ["```", ""]
    return "\n".join(out)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr.worse td { background: #fde8e8; font-weight: bold; }
p.warning { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5em 0.8em; }
.chart { margin: 0.5em 0 1.5em; }
"""


def _figure(chart: Chart):
    """A plotly figure; its texts escaped, since plotly reads a few HTML tags in them."""
    import plotly.graph_objects as go

    esc = html.escape

    fig = go.Figure()
    if chart.kind == "pie":
        labels, values = chart.lines["days"]
        fig.add_trace(go.Pie(labels=labels, values=values, sort=False, texttemplate="%{label}: %{value:.2f} d"))
    else:
        for name, (x, y) in chart.lines.items():
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=esc(name)))
        for x, y, label in chart.marks:
            fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers+text", text=[esc(label)], textposition="top center",
                                     name=esc(label), marker={"size": 10, "color": "crimson"}))
        fig.update_xaxes(title_text=esc(chart.x_title), type="date" if chart.x_is_time else None)
        fig.update_yaxes(title_text=esc(chart.y_title))
    fig.update_layout(title_text=esc(chart.title), height=360, margin={"l": 60, "r": 20, "t": 50, "b": 50},
                      template="plotly_white")
    return fig


def to_html(blocks: list[Block], title: str) -> str:
    """One page; plotly.js is inlined with the first chart (a page without charts needs none)."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body>"]
    script_included = False
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            parts.append(f"<p class=\"{'warning' if block.warning else ''}\">{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
            body = "".join(
                ("<tr class=\"worse\">" if i in block.flagged else "<tr>")
                + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                for i, row in enumerate(block.rows))
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Chart):
            div = _figure(block).to_html(full_html=False, include_plotlyjs=not script_included,
                                         config={"displaylogo": False, "responsive": True})
            script_included = True
            parts.append(f"<div class=\"chart\">{div}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
