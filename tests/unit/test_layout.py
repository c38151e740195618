"""The package's folders say who owns what, and README's map of the code says the same as the folders."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "include" / "mlscale"


def _readme_map() -> dict[str, str]:
    """README's Layout block for include/mlscale: the text of each entry, by folder ('' for the top level)."""
    block = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("```")[1]
    lines = block.split("include/mlscale/", 1)[1].split("\ninclude/models/", 1)[0].splitlines()
    entries, current = {"": ""}, ""
    for line in lines:
        folder = re.match(r"  (\w+)/ ", line)
        if folder:
            current = folder.group(1)
            entries[current] = line[len(folder.group(0)):]
        else:
            entries[current] += " " + line
    return {k: " ".join(v.split()) for k, v in entries.items()}


def test_readme_maps_every_module_in_its_folder():
    readme = _readme_map()
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert set(readme) - {""} == folders
    for folder in ["", *folders]:
        modules = {p.stem for p in (PACKAGE / folder).glob("*.py")} - {"__init__"}
        named = set(re.findall(r"\b([a-z_]+)\b", readme[folder]))
        assert modules <= named, (folder, modules - named)


def test_only_the_airflow_folder_imports_airflow():
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            if any(n == "airflow" or n.startswith("airflow.") for n in names):
                importers.add(path.relative_to(PACKAGE).parts[0])
    assert importers == {"airflow"}
