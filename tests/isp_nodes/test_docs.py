"""docs/isp.md shows the model's defaults and sources as the code has them."""

from __future__ import annotations

from recprep.isp_nodes.model import described

from ..conftest import REPO


def test_the_docs_table_is_the_models():
    text = (REPO / "docs" / "isp.md").read_text()
    for name, value, source in described():
        assert f"| `{name}` | {value:g} | {source} |" in text, name
