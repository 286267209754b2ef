"""``python -m appliance.commands.openapi [FILE]``: the OpenAPI document, written without serving.

The UI's TypeScript types are generated from the committed copy (webui/src/api/openapi.json);
tests/test_ui_contract.py checks that copy against what a running appliance serves.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from appliance.api.app import create_app
from appliance.config import Settings


def document(settings: Settings | None = None) -> dict[str, Any]:
    """The document /schema/openapi.json serves. Default settings, because the limits they hold (body
    and upload sizes) appear in the text and the committed copy must not depend on who ran it."""
    settings = settings or Settings(data_dir=Path("/nonexistent"), webui_dir=Path("/nonexistent"))
    schema: dict[str, Any] = create_app(settings).openapi_schema.to_schema()
    return schema


def main(argv: list[str] | None = None) -> None:
    """Write the document as indented JSON to FILE (stdout without one)."""
    args = sys.argv[1:] if argv is None else argv
    text = json.dumps(document(), indent=2, ensure_ascii=False) + "\n"
    if args:
        Path(args[0]).write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
