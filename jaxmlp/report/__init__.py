"""The report: committed results (experiments/) -> figures and Markdown pages (docs/).

load (results.json, histories, the original pages' data) -> compare (stats, «mejor»/«empate»)
-> tables and figures -> context (what a template sees) -> render (Jinja2 templates into docs/).
JAX-free: json, csv, numpy, matplotlib and Jinja2 only.
"""

from jaxmlp.report.render import ReportError, generate

__all__ = ["ReportError", "generate"]
