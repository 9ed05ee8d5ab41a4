"""The committed CLI reference (docs/cli.md) is the one the stage configs generate today."""

from __future__ import annotations

from pathlib import Path

from mixture_ray import cli_reference
from mixture_ray.config import option_keys
from mixture_ray.stages import STAGES

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_reference_is_up_to_date() -> None:
    assert DOCS.read_text(encoding="utf-8") == cli_reference.reference(), (
        "docs/cli.md is out of date: run `make docs` (python -m mixture_ray.cli_reference docs/cli.md)"
    )


def test_every_key_of_every_stage_is_listed() -> None:
    text = cli_reference.reference()
    for spec in STAGES:
        section = text.split(f"## `mixture-ray {spec.name}`\n", 1)[1].split("\n## ", 1)[0]
        for key in option_keys(spec.config()):
            assert f"| `{key}` |" in section, (spec.name, key)


def test_main_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    assert cli_reference.main([str(out)]) == 0
    assert out.read_text(encoding="utf-8") == cli_reference.reference()
    assert "| `pool.workers` |" in out.read_text(encoding="utf-8")
