"""Server-rendered pages for radiologists and compliance officers (no build step).

The pages are shells rendered with Jinja2: they contain no patient data.  ``static/app.js``
asks for the bearer token once, keeps it in ``sessionStorage`` and fills the page from the
JSON API, so the API's roles and auditing apply to everything the browser shows.  Responses
carry a strict Content-Security-Policy (no inline script, same-origin only).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

__all__ = ["AI_DRAFT_LABEL", "SECURITY_HEADERS", "add_page_routes", "render_page"]

AI_DRAFT_LABEL = "AI DRAFT — pending radiologist review"
_HERE = Path(__file__).resolve().parent
_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(name: str, **context: str) -> str:
    """Render ``templates/<name>.html`` with the common context."""
    template = _environment().get_template(f"{name}.html")
    return template.render(ai_label=AI_DRAFT_LABEL, **context)


def add_page_routes(router: APIRouter) -> None:
    """Add ``/``, ``/drafts/{id}``, ``/audit`` and ``/static/{name}`` to ``router``."""

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def queue_page() -> HTMLResponse:
        return HTMLResponse(render_page("queue", page="queue"), headers=SECURITY_HEADERS)

    @router.get("/drafts/{draft_id}", response_class=HTMLResponse, include_in_schema=False)
    async def review_page(draft_id: str) -> HTMLResponse:
        return HTMLResponse(
            render_page("review", page="review", draft_id=draft_id[:64]),
            headers=SECURITY_HEADERS,
        )

    @router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    async def audit_page() -> HTMLResponse:
        return HTMLResponse(render_page("audit", page="audit"), headers=SECURITY_HEADERS)

    @router.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        media = _STATIC.get(name)
        if media is None:
            raise HTTPException(404, "not found")
        return FileResponse(
            _HERE / "static" / name,
            media_type=media,
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
        )
