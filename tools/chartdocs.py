"""charts/nodelimits/README.md, generated from the chart's values.schema.json and values.yaml.

    python -m tools.chartdocs           # rewrite the README (make chart-docs)
    python -m tools.chartdocs --check   # exit 1 when it is not current

One row per value: its type and allowed values from the schema, its default from
values.yaml, its description from the schema, else from the comment above the key in
values.yaml. tests/chart/test_chart_readme.py fails when the README is not what this
renders, so a new or changed value cannot ship undocumented.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["README", "Row", "comments", "main", "render", "rows"]

CHART = Path(__file__).resolve().parents[1] / "charts" / "nodelimits"
README = CHART / "README.md"
LONG_DEFAULT = 60
"""Defaults longer than this (in JSON) are left to values.yaml."""

_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][A-Za-z0-9_-]*):(?P<rest>.*)$")
_INLINE_COMMENT = re.compile(r"\s#\s?(?P<text>.*)$")


@dataclass(frozen=True, slots=True)
class Row:
    """One value of the chart, as the README's table shows it."""

    path: str
    type: str
    default: str
    description: str


def comments(values_text: str) -> dict[str, str]:
    """Dotted key path -> the comment written above it (or after it) in values.yaml."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    for line in values_text.splitlines():
        stripped = line.strip()
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if text and not set(text) <= {"-"}:
                pending.append(text)
            continue
        match = _KEY.match(line)
        if not match or stripped.startswith("-"):
            pending = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        inline = _INLINE_COMMENT.search(match["rest"])
        parts = [*pending, inline["text"].strip()] if inline else pending
        if parts:
            found[".".join(key for _, key in stack)] = " ".join(parts)
        pending = []
    return found


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    node = dict(node)
    while "$ref" in node:
        target: Any = root
        for part in node.pop("$ref").removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **node}
    return node


def _type(node: Mapping[str, Any]) -> str:
    kinds = node.get("type", "any")
    text = " | ".join(kinds) if isinstance(kinds, list) else str(kinds)
    if "enum" in node:
        text += ": " + ", ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    bounds = [
        f"{sign} {node[key]}"
        for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"))
        if key in node
    ]
    if bounds:
        text += " (" + ", ".join(bounds) + ")"
    return text


def _default(value: Any) -> str:
    if value is _MISSING:
        return ""
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > LONG_DEFAULT:
        return "see values.yaml"
    return f"`{text}`"


_MISSING = object()


def rows(
    schema: Mapping[str, Any], defaults: Mapping[str, Any], notes: Mapping[str, str]
) -> Iterator[Row]:
    """Every value in schema order: objects whose default has keys are opened, the rest
    (maps, lists, free-form objects, scalars) is one row each."""

    def walk(props: Mapping[str, Any], values: Any, prefix: str) -> Iterator[Row]:
        for name, raw in props.items():
            node = _resolve(raw, schema)
            path = f"{prefix}{name}"
            value = values.get(name, _MISSING) if isinstance(values, Mapping) else _MISSING
            description = node.get("description") or _note(node, notes.get(path, ""))
            if node.get("properties") and isinstance(value, Mapping) and value:
                if description:
                    yield Row(path, "object", "", description)
                yield from walk(node["properties"], value, f"{path}.")
            else:
                yield Row(path, _type(node), _default(value), description)

    yield from walk(schema["properties"], defaults, "")


def _note(node: Mapping[str, Any], note: str) -> str:
    """The values.yaml comment, unless it only repeats the allowed values ("json | text")."""
    choices = {str(v) for v in node.get("enum", ()) if v is not None}
    return "" if choices and {part.strip() for part in note.split("|")} == choices else note


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


HEADER = """\
# nodelimits Helm chart

<!-- Generated by `make chart-docs` (python -m tools.chartdocs) from values.schema.json and
values.yaml: edit those, not this file. tests/chart/test_chart_readme.py checks it is current. -->

{description}

Chart version {version}, app version {app_version}; Kubernetes {kube_version}.

```sh
helm install nodelimits charts/nodelimits --namespace nodelimits-system --create-namespace \\
  --set config.platform.token_source=aksk --set credentials.existingSecret=scnet-login
helm test nodelimits --namespace nodelimits-system   # an oversized pod, dry-run, must be denied
```

Installing, upgrading, certificates, permissions and every setting in context:
[docs/install.md](../../docs/install.md).

Every value is checked by `values.schema.json`: an unknown key, a wrong type or a value
out of range fails `helm install` with the key's path. The templates refuse what the
schema cannot express (e.g. the webhook and metrics ports equal, `renewBefore` not
shorter than `duration`), naming the values.

## Values

| Key | Type | Default | Description |
|---|---|---|---|
"""


def render(chart: Path = CHART) -> str:
    """The README for the chart at `chart`."""
    schema = json.loads((chart / "values.schema.json").read_text())
    values_text = (chart / "values.yaml").read_text()
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    table = "".join(
        f"| `{row.path}` | {_cell(row.type)} | {_cell(row.default)} | {_cell(row.description)} |\n"
        for row in rows(schema, yaml.safe_load(values_text), comments(values_text))
    )
    return (
        HEADER.format(
            description=" ".join(str(meta["description"]).split()),
            version=meta["version"],
            app_version=meta["appVersion"],
            kube_version=meta.get("kubeVersion", "any"),
        )
        + table
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.chartdocs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is not current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if README.exists() and README.read_text() == text:
            return 0
        print(
            f"{README.relative_to(CHART.parents[1])} is not current: run make chart-docs",
            file=sys.stderr,
        )
        return 1
    README.write_text(text)
    print(f"wrote {README.relative_to(CHART.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
