"""The API reference at ``/schema``: Swagger UI, served from the appliance itself.

Litestar's viewers load their scripts, styles, fonts and favicon from CDNs, so on a LAN without
internet the page stays blank. Swagger UI's built files come with the ``swagger-ui-bundle-v2``
package; this plugin renders a page that names only same-origin URLs and serves the two files it
needs (nothing else of the bundle: its demo page points at the public petstore)."""

from __future__ import annotations

import importlib.resources
from functools import cache
from pathlib import Path
from typing import Any

from litestar import MediaType, Request, Router, get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.response import File

VIEWER_PATH = "/viewer"  # under the OpenAPI router's path: /schema/viewer/<file>
_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}
# Belt and braces: even a viewer release that tried to reach out could not from this page.
_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'"
)


@cache
def bundle_dir() -> Path:
    """The folder of Swagger UI's built files inside the installed package (named by its version)."""
    vendor = Path(str(importlib.resources.files("swagger_ui_bundle") / "vendor"))
    found = sorted(vendor.glob("swagger-ui-*/swagger-ui-bundle.js"))
    if not found:
        raise RuntimeError(f"swagger-ui-bundle-v2 is installed without its files ({vendor})")
    return found[-1].parent


class LocalSwaggerPlugin(OpenAPIRenderPlugin):
    def __init__(self, path: str = "/swagger") -> None:
        super().__init__(path=path, favicon="", style="<style>body { margin: 0; padding: 0 }</style>")

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        base = request.app.route_reverse("schema_viewer_file", file="x").rsplit("/", 1)[0]
        title = str(openapi_schema.get("info", {}).get("title", "API")).replace("<", "&lt;")
        spec_url = self.get_openapi_json_route(request)
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta http-equiv="Content-Security-Policy" content="{_CSP}">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="icon" type="image/png" href="{base}/favicon-32x32.png">
  <link rel="stylesheet" href="{base}/swagger-ui.css">
  {self.style}
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{base}/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{spec_url}",
      dom_id: "#swagger-ui",
      deepLinking: true,
      // The default asks validator.swagger.io about the document: nothing may leave the LAN.
      validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
    }});
  </script>
</body>
</html>""".encode()

    def receive_router(self, router: Router) -> None:
        router.register(viewer_file)


@get(
    VIEWER_PATH + "/{file:str}",
    name="schema_viewer_file",
    include_in_schema=False,
    sync_to_thread=False,
    media_type=MediaType.TEXT,
)
def viewer_file(file: str) -> File:
    if file not in _FILES:
        raise NotFoundException(f"No viewer file {file!r}")
    return File(
        bundle_dir() / file,
        filename=file,
        content_disposition_type="inline",
        media_type=_FILES[file],
        headers={"Cache-Control": "public, max-age=86400"},
    )
