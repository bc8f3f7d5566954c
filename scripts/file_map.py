"""Print the README file map: every Python file of the package, kernels, scripts and tests with its line count.

    python scripts/file_map.py > /tmp/map.md     # then paste into README.md's "File map" section
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ("qsched_core", "kernels", "scripts")


def first_line(path: Path) -> str:
    """First line of the module docstring (what the file is for)."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def main():
    print("| file | lines | what it is |\n|---|---|---|")
    for group in GROUPS:
        for path in sorted((ROOT / group).rglob("*.py")):
            if path.name == "__init__.py" and path.stat().st_size < 200:
                continue
            n = len(path.read_text().splitlines())
            print(f"| `{path.relative_to(ROOT)}` | {n} | {first_line(path)} |")
    tests = sorted((ROOT / "tests").rglob("test_*.py"))
    total = sum(len(p.read_text().splitlines()) for p in tests)
    print(f"| `tests/` ({len(tests)} files) | {total} | mirrors the package; notebooks run headless via nbmake |")
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        print(f"| `{nb.relative_to(ROOT)}` | | notebook |")


if __name__ == "__main__":
    main()
