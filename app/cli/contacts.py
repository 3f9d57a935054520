"""``sluice contacts …``: import, export, opt-out, opt-in."""

from __future__ import annotations

import click


@click.group("contacts")
def contacts_group() -> None:
    """Import, export and opt contacts out of or into mass email."""
