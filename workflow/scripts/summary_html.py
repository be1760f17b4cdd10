"""Render summary.md (Markdown: headings, paragraphs, pipe tables) as a standalone HTML page.

Snakemake's HTML report shows an HTML result inline but offers a Markdown file only as a
download, so the summary rule writes this rendering next to summary.md and marks both for the
report (`snakemake --report results/<name>/report.html`).
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

from markdown_it import MarkdownIt

STYLE = """
body { font-family: sans-serif; font-size: 14px; margin: 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 8px; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
"""


def render(markdown: str, title: str) -> str:
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("markdown", type=Path, help="summary.md")
    p.add_argument("html", type=Path, help="the HTML file to write")
    args = p.parse_args(argv)
    text = args.markdown.read_text(encoding="utf-8")
    args.html.write_text(render(text, args.markdown.name), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
