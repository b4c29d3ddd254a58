"""The configuration reference (docs/configuration.md), generated from the models themselves."""

from __future__ import annotations

from pydantic import BaseModel

from alluse.domain.config import AllUseConfig, default_config, flatten

HEADER = """# Configuration reference

Generated from `shared/alluse/domain/config.py` by `alluse config reference`; a test keeps this file
identical to what the code says. Every setting can be overridden globally or per account:

    alluse config set gen.delta_band.min=0.42 --reason "..."                 # global layer
    alluse config set gen.delta_band.min=0.42 --account ACC-00001 --reason "..."

Amounts are dollars, fractions are decimals (0.05 = 5 %), times are America/New_York.
"""


TABLE_HEAD = "| Setting | Default | Meaning |"


def _descriptions(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, field in model.model_fields.items():
        out[f"{prefix}{name}"] = field.description or ""
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out.update(_descriptions(field.annotation, f"{prefix}{name}."))
    return out


def config_reference_markdown() -> str:
    described = _descriptions(AllUseConfig)
    lines = [HEADER]
    section = None
    for path, value in flatten(default_config()):
        top = path.split(".", 1)[0]
        if top != section:
            section = top
            lines += ["", f"## `{top}` — {described.get(top, '')}", "", TABLE_HEAD, "|---|---|---|"]
        meaning, shown = (text.replace("|", "\\|") for text in (described.get(path, ""), value))
        lines.append(f"| `{path}` | `{shown}` | {meaning} |")
    return "\n".join(lines) + "\n"
