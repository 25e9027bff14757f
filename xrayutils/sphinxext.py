"""A Sphinx extension for the book's build: each page's scripts once, and no build machine's path in the reference.

Jupyter Book 1.0 registers sphinx-thebe's configuration script twice, and the
second ``const THEBE_JS_URL`` is a JavaScript error on every page (the browser
test, ``tests/test_browser.py``, fails on it).  Autodoc prints a module's
constants and a dataclass's defaults by their value, and a path's value is the
folder of the machine that built the book (``PosixPath('/home/.../profiles.yml')``):
the reference shows it from the repository instead (``Path("<repository>/profiles.yml")``).
Listed in ``_config.yml``'s ``extra_extensions``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

#: How the reference names the repository's folder.
REPOSITORY = "<repository>"


def without_machine_paths(describe: Callable[..., str], root: Path) -> Callable[..., str]:
    """``describe`` (Sphinx's ``object_description``) with paths under ``root`` shown from the repository, and as ``Path("...")``.

    >>> shown = without_machine_paths(repr, Path("/home/me/clone"))
    >>> shown(Path("/home/me/clone/profiles.yml")), shown(Path("/proc/cpuinfo")), shown(["/home/me/clone/x"])
    ('Path("<repository>/profiles.yml")', 'Path("/proc/cpuinfo")', "['<repository>/x']")
    """
    def description(obj: Any, *args: Any, **kwargs: Any) -> str:
        if isinstance(obj, PurePath):
            path = Path(obj)
            shown = f"{REPOSITORY}/{path.relative_to(root).as_posix()}" if path.is_relative_to(root) else path.as_posix()
            return f'Path("{shown}")'
        return describe(obj, *args, **kwargs).replace(str(root), REPOSITORY)

    return description


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
    from sphinx.ext import autodoc
    from sphinx.util import inspect

    from xrayutils.chapters import REPO_ROOT

    app.connect("html-page-context", unique_scripts, priority=900)
    for module in (autodoc, inspect):  # constants' values (autodoc) and signatures' defaults (inspect)
        module.object_description = without_machine_paths(module.object_description, REPO_ROOT)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
