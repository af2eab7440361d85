"""Chart.yaml as Artifact Hub reads it (issue 17): an icon that exists in the repository,
string annotations, the image the chart installs, links that resolve to files here; and the
chart README generated from the schema (tools/chartdocs.py) is current."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.chart.chart import CHART, REPO_ROOT, run_helm
from tools import chartdocs

META = yaml.safe_load((CHART / "Chart.yaml").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
RAW = "https://raw.githubusercontent.com/nodelimits/nodelimits/main/"
BLOB = "https://github.com/nodelimits/nodelimits/blob/main/"


def test_the_icon_is_an_svg_kept_in_this_repository() -> None:
    assert META["icon"].startswith(RAW)
    icon = REPO_ROOT / META["icon"].removeprefix(RAW)
    assert icon.is_file()
    assert icon.read_text().lstrip().startswith("<svg")


def test_artifact_hub_annotations_are_strings() -> None:
    annotations = META["annotations"]
    assert {"artifacthub.io/license", "artifacthub.io/images", "artifacthub.io/links"} <= set(
        annotations
    )
    assert all(isinstance(v, str) for v in annotations.values())


def test_artifact_hub_lists_the_image_the_chart_installs() -> None:
    images = yaml.safe_load(META["annotations"]["artifacthub.io/images"])
    expected = f"{VALUES['image']['repository']}:{META['appVersion']}"
    assert [i["image"] for i in images] == [expected]


@pytest.mark.parametrize(
    "link",
    yaml.safe_load(META["annotations"]["artifacthub.io/links"]),
    ids=lambda link: link["name"],
)
def test_artifact_hub_links_name_files_of_this_repository(link: dict[str, str]) -> None:
    if link["url"].startswith(BLOB):
        assert (REPO_ROOT / link["url"].removeprefix(BLOB)).is_file()
    else:
        assert link["url"] == META["home"]


def test_the_chart_readme_is_generated_from_the_current_schema() -> None:
    """Fails after a change to values.yaml or values.schema.json: run `make chart-docs`."""
    readme = CHART / "README.md"
    assert readme.read_text() == chartdocs.render(), (
        "charts/nodelimits/README.md: run make chart-docs"
    )


def test_the_chart_readme_has_a_row_for_every_top_level_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    rows = {row.path.split(".")[0] for row in chartdocs.rows(schema, VALUES, {})}
    assert set(VALUES) <= rows


def test_readme_comments_come_from_the_line_above_or_after_the_key() -> None:
    text = "a:\n  # the first\n  # and second line\n  b: 1   # inline\n\n# lost\n\nc: 2\n"
    assert chartdocs.comments(text) == {"a.b": "the first and second line inline"}


def test_the_readme_and_the_test_script_are_packaged_with_the_chart(
    helm: Path, tmp_path: Path
) -> None:
    run_helm(helm, "package", str(CHART), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("nodelimits-*.tgz")
    with tarfile.open(package) as archive:
        names = set(archive.getnames())
    assert {"nodelimits/README.md", "nodelimits/files/helm-test.py"} <= names
    assert "nodelimits/templates/tests/denial.yaml" in names


def test_a_comment_that_only_lists_the_allowed_values_is_not_repeated() -> None:
    schema = {
        "properties": {"mode": {"type": "string", "enum": ["a", "b"]}, "n": {"type": "integer"}}
    }
    notes = {"mode": "a | b", "n": "how many | at most"}

    rows = {
        row.path: row.description for row in chartdocs.rows(schema, {"mode": "a", "n": 1}, notes)
    }

    assert rows == {"mode": "", "n": "how many | at most"}
