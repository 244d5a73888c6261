"""The live page (engine/serve/page/: HTML, CSS and ES modules, no build step), public: it holds no data
and asks for the token before it calls the API. It loads nothing from elsewhere (the box may be offline),
and its Content-Security-Policy tells the browser to refuse anything else and any framing."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

PAGE = Path(__file__).resolve().parents[1] / "page"
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
                                          "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
                "Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def page() -> FileResponse:
    """The live page: pick a source, watch it, click to prompt."""
    return FileResponse(PAGE / "index.html", headers=PAGE_HEADERS)


@router.get("/page/{name}")
def asset(name: str) -> FileResponse:
    """The page's own files, by name (no folders: nothing else of the package is reachable)."""
    from fastapi import HTTPException

    path = PAGE / name
    if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
        raise HTTPException(404, f"the page has no file {name!r}")
    return FileResponse(path, headers=PAGE_HEADERS)
