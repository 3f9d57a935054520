"""``sluice lists …`` and ``sluice audience``."""

from __future__ import annotations

import click


@click.group("lists")
def lists_group() -> None:
    """Create target lists and fill them."""


@click.command("audience")
def audience_command() -> None:
    """Count who a campaign on some lists would reach."""
    raise click.ClickException("not built yet")
