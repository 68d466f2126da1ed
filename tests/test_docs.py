"""Every Python code block in README.md and docs/*.md runs (issue 24: docs that
cannot go stale).

Blocks of one page run in order in one namespace, in a temporary working
directory with the repository on ``sys.path``, so a page reads as a session.
Two HTML comments, invisible on the rendered page, steer a block:

* ``<!-- docs-test: skip REASON -->`` right before a block skips it, and the
  reason is required (a skipped claim is visibly not executed);
* ``<!-- docs-test: setup`` ... ``-->`` holds code run before the next block
  (imports, toy inputs, a generated wrapper): what a reader already has.

Pages without a Python block are not collected; ``tests/test_site.py`` builds
every page (links and anchors checked).
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```python\s*\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)
_SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s+(.+?)\s*-->\s*$")
_SETUP = re.compile(r"<!--\s*docs-test:\s*setup\s*\n((?:(?!<!--|-->).)*)-->\s*\Z", re.DOTALL)


def blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """``(line, code, skip reason or None)`` of every python block, setups inlined."""
    text = page.read_text(encoding="utf-8")
    out: list[tuple[int, str, str | None]] = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n")
        last = before.rsplit("\n", 1)[-1]
        line = text.count("\n", 0, m.start()) + 1
        skip = _SKIP.search(last)
        setup = _SETUP.search(before)
        code = m.group(1)
        if setup:  # the comment right before the block
            code = setup.group(1) + "\n" + code
        out.append((line, code, skip.group(1) if skip else None))
    return out


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=_page_id)
def test_code_blocks_run(page, tmp_path, monkeypatch):
    found = blocks(page)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.syspath_prepend(str(tmp_path))
    # a real module: dataclass transforms (Linen modules) look their module up
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    ran = 0
    imported = set(sys.modules)
    try:
        for line, code, skip in found:
            if skip is not None:
                continue
            try:
                exec(compile(code, f"{_page_id(page)}:{line}", "exec"), namespace)  # noqa: S102
            except Exception as err:
                raise AssertionError(
                    f"{_page_id(page)}: the code block at line {line} raised "
                    f"{type(err).__name__}: {err}"
                ) from err
            ran += 1
    finally:  # a page's own modules (mypkg in its tmp dir) go with it
        for name in set(sys.modules) - imported:
            if str(getattr(sys.modules[name], "__file__", "")).startswith(str(tmp_path)):
                del sys.modules[name]
    assert ran or all(s for _, _, s in found)


def test_skips_name_a_reason():
    for page in PAGES:
        for line, _, skip in blocks(page):
            assert skip is None or len(skip) > 8, f"{_page_id(page)}:{line}: say why"



def test_readme_shows_the_golden_wrapper_as_generated():
    """The README's generated class is the golden file's, byte for byte."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(code for _, code, _ in blocks(ROOT / "README.md") if "__nnxgen__" in code)
    shown = block.split("-->\n", 1)[-1] if "-->" in block else block
    shown = shown[shown.index("class MLP(nn.Module):") :]
    golden = (ROOT / "generated_examples" / "mlp_linen.py").read_text(encoding="utf-8")
    assert shown in golden, "README's generated class differs from mlp_linen.py"
    assert "nnxgen wrap mypkg.models:MLP -o mypkg/models_linen.py" in readme
