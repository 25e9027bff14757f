"""A Sphinx extension for the book's build: each page's scripts once.

Jupyter Book 1.0 registers sphinx-thebe's configuration script twice, and the
second ``const THEBE_JS_URL`` is a JavaScript error on every page (the browser
test, ``tests/test_browser.py``, fails on it).  Listed in ``_config.yml``'s
``extra_extensions``.
"""

from __future__ import annotations

from typing import Any


def unique_scripts(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Drop a page's repeated script entries (same file, same inline body), keeping the first."""
    seen, kept = set(), []
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})
        key = (getattr(script, "filename", script) or "",  # an inline script's file is None or "", by who added it
               tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
