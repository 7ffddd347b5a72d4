"""Put a run's result tables into README.md between markers, so no result table is typed by hand.

The README holds blocks like::

    <!-- results: demo -->
    ...tables printed from results/demo.json...
    <!-- /results -->

:func:`render` prints the tables of one results.json with a line naming what produced them (config and
code fingerprints); :func:`splice` replaces the block of that name. ``crossadapt tables RUN_DIR --readme
README.md --name demo`` does both and keeps a copy of the results.json beside the README
(``results/demo.json``), which the test suite renders again to check that the README was not edited by hand.
"""

from __future__ import annotations

import re
from typing import Any

from crossadapt.errors import DataError
from crossadapt.experiment.tables import tables_markdown

__all__ = ["render", "splice", "block"]

_BLOCK = r"(<!-- results: {name} -->\n)(.*?)(<!-- /results -->)"


def render(results: dict[str, Any], source: str) -> str:
    """The Markdown tables of ``results`` (a results.json), headed one level below the README's results
    section, and a closing line naming ``source`` and the run's fingerprints."""
    tables = tables_markdown(results).replace("### ", "#### ")
    fps = results.get("fingerprints") or {}
    bound = ", ".join(f"{k} {str(v)[:12]}" for k, v in sorted(fps.items()) if isinstance(v, str))
    return f"{tables}\nPrinted by `crossadapt tables` from `{source}`" + (f" ({bound})." if bound else ".") + "\n"


def block(readme: str, name: str) -> str:
    """The current text of block ``name`` in ``readme``."""
    m = re.search(_BLOCK.format(name=re.escape(name)), readme, flags=re.S)
    if not m:
        raise DataError(f"README has no block '<!-- results: {name} -->' ... '<!-- /results -->'")
    return m.group(2)


def splice(readme: str, name: str, text: str) -> str:
    """``readme`` with the block ``name`` replaced by ``text``."""
    block(readme, name)  # names the missing block
    return re.sub(_BLOCK.format(name=re.escape(name)), lambda m: m.group(1) + text + m.group(3), readme,
                  count=1, flags=re.S)
