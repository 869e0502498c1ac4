"""``/api/v1/docs``: the OpenAPI description as one plain HTML page.

FastAPI's Swagger UI loads scripts from a CDN and runs inline script; the API's
Content-Security-Policy (``default-src 'self'``) forbids both, and the machines feedtag runs
on are often offline. This page needs neither: a table of routes, rendered on the server,
every text escaped.
"""

from __future__ import annotations

import html
from typing import Any, Final

METHODS: Final = ("get", "post", "put", "patch", "delete")


def docs_page(schema: dict[str, Any]) -> str:
    """The HTML page of an OpenAPI ``schema``.

    >>> page = docs_page({"info": {"title": "<t>"}, "paths": {"/x": {"get": {"summary": "s"}}}})
    >>> "&lt;t&gt;" in page and "<td>GET</td>" in page
    True
    """
    info = schema.get("info", {})
    title = html.escape(str(info.get("title", "API")))
    rows = []
    for path, operations in sorted(schema.get("paths", {}).items()):
        for method in METHODS:
            operation = operations.get(method)
            if operation is None:
                continue
            parameters = ", ".join(
                html.escape(str(p.get("name", ""))) for p in operation.get("parameters", [])
            )
            rows.append(
                f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(str(operation.get('summary', '')))}</td>"
                f"<td>{parameters}</td></tr>"
            )
    description = html.escape(str(info.get("description", "")))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title></head><body><h1>{title}</h1><p>{description}</p>"
        '<p>Machine-readable: <a href="/api/v1/openapi.json">openapi.json</a>; '
        "see also docs/api.md.</p><table><thead><tr><th>method</th><th>path</th>"
        "<th>what</th><th>parameters</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></body></html>"
    )
