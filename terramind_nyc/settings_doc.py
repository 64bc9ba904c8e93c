"""The settings reference in ``docs/settings.md``, generated from :mod:`terramind_nyc.settings`.

``python -m terramind_nyc.settings_doc`` prints the tables; a test checks the document against them.
"""

from __future__ import annotations

import dataclasses

from .settings import ENV_PREFIX, PROFILES, Settings

__all__ = ["profiles_table", "settings_table"]


def settings_table() -> str:
    """Markdown table of every setting, its environment variable, default and meaning."""
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(str(x) for x in default)
        rows.append(f"| `{f.name}` | `{ENV_PREFIX}{f.name.upper()}` | `{default}` | {f.metadata['doc']} |")
    return "\n".join(rows)


def profiles_table() -> str:
    """Markdown table of the named profiles (``profile=`` / ``TERRAMIND_NYC_PROFILE``) and what each sets."""
    rows = ["| profile | sets |", "|---|---|"]
    for name, values in PROFILES.items():
        rows.append(f"| `{name}` | {', '.join(f'`{k}={v:g}`' if isinstance(v, float) else f'`{k}={v}`' for k, v in values.items())} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(settings_table())
    print()
    print(profiles_table())
