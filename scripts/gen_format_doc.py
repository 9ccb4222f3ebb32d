"""Write the generated parts of docs/format.md (the field table and the version list) from the
code's declarations. tests/test_layout.py fails when the file differs.

    python scripts/gen_format_doc.py
"""

from __future__ import annotations

from pathlib import Path

from kancoin.format.layout import field_table_markdown, versions_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "format.md"


def fill(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return head + begin + body.strip() + "\n" + end + tail


def main() -> None:
    text = DOC.read_text("utf-8")
    text = fill(text, "fields", field_table_markdown())
    text = fill(text, "versions", versions_markdown())
    DOC.write_text(text, "utf-8")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
