"""The docs tell the truth: the configuration reference is what the code says."""

from pathlib import Path

from alluse.cli.reference import config_reference_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_current() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == config_reference_markdown(), "regenerate: alluse config reference > docs/configuration.md"


def test_every_setting_is_described() -> None:
    rows = [line for line in config_reference_markdown().splitlines() if line.startswith("| `")]
    assert len(rows) > 100
    undescribed = [row.split("|")[1].strip() for row in rows if not row.rstrip(" |").split("|")[-1].strip()]
    assert undescribed == []


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
