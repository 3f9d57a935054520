"""The navigation bar: one table of pages and the roles that see them.

A new page slots in by adding a ``NavItem`` here (and protecting its
blueprint or view with the same roles in ``app.web.access``: the menu only
hides links, the server is what refuses).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, request
from flask_login import current_user

from app.models import Role
from app.web.access import PUBLIC_BLUEPRINTS, web_user
from app.web.dev_mail import catcher_directory

EVERYONE = frozenset(Role)
ADMINS = frozenset({Role.ADMIN})


@dataclass(frozen=True)
class NavItem:
    endpoint: str
    label: str
    roles: frozenset[Role] = EVERYONE
    # The endpoint's blueprint prefix that marks the item as current.
    section: str = ""

    def is_current(self) -> bool:
        section = self.section or self.endpoint
        return request.endpoint is not None and (
            request.endpoint == self.endpoint or request.endpoint.startswith(section + ".")
        )


NAV: tuple[NavItem, ...] = (
    NavItem("ui.dashboard", "Dashboard"),
    # Marketer pages (contacts, lists, templates, campaigns, suppression)
    # slot in here.
    NavItem("contacts.index", "Contacts", section="contacts"),
    NavItem("lists.index", "Lists", section="lists"),
    NavItem("suppression.index", "Suppression", section="suppression"),
    NavItem("email_templates.template_list", "Templates", section="email_templates"),
    NavItem("campaigns.campaign_list", "Campaigns", section="campaigns"),
    NavItem("results.index", "Results", EVERYONE, "results"),
    NavItem("admin.settings", "Settings", ADMINS),
    NavItem("admin.users", "Users", ADMINS),
    NavItem("admin.jobs", "Jobs", ADMINS),
)
DEV_MAIL = NavItem("dev_mail.message_list", "Caught mail", EVERYONE, "dev_mail")


def nav_items() -> list[NavItem]:
    """The items the logged-in user may see (none when logged out)."""
    if request.blueprint in PUBLIC_BLUEPRINTS or not current_user.is_authenticated:
        return []
    role = web_user().role
    items = [item for item in NAV if role in item.roles]
    if catcher_directory() is not None:
        items.append(DEV_MAIL)
    return items


def init_navigation(app: Flask) -> None:
    app.context_processor(lambda: {"nav_items": nav_items()})
