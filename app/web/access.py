"""Who may see what: log-in sessions (Flask-Login) and roles.

Rules:

- **Log-in is required everywhere by default.** Every endpoint needs a
  logged-in, active user unless its view is marked ``@public_endpoint`` or
  its blueprint is in ``PUBLIC_BLUEPRINTS`` (``public``: the links in sent
  mail; ``webhooks``: relays' callbacks, which authenticate by signature)
  or it is a static file. A new page is therefore protected without
  anyone remembering to protect it.
- **Roles are checked on the server** for every request, GET or POST:
  ``require_role`` (a blueprint's ``before_request``, as ``admin`` uses) or
  ``@role_required`` on one view; anyone else gets 403, whatever the page
  shows or hides.
- **The user is reloaded on every request**: a deactivated user, or one
  whose password was reset or changed, is logged out at their next request
  (the session id includes a fingerprint of the password hash), and a role
  change applies at once.
- **Sessions** live in Flask's signed cookie: HttpOnly, SameSite=Lax,
  Secure per ``cookie_secure`` (``config``), ``SESSION_LIFETIME`` long. The
  session is cleared at log-in (no fixation) and at log-out.
- ``next`` after log-in is only ever a path on this site (no open redirect).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import (
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import LoginManager, current_user
from werkzeug.wrappers import Response as BaseResponse

from app.extensions import current_session
from app.models import Role, User

SESSION_LIFETIME = timedelta(hours=12)
PUBLIC_BLUEPRINTS = frozenset({"public", "webhooks"})

login_manager = LoginManager()

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class SignedInUser:
    """The logged-in user as the web layer sees it (Flask-Login's user
    interface); built from the ``User`` row at every request."""

    id: int
    email: str
    role: Role
    session_id: str
    time_zone: str | None = None  # None: the site's default

    is_authenticated = True
    is_active = True
    is_anonymous = False

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def get_id(self) -> str:
        return self.session_id


def _fingerprint(user: User) -> str:
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, user.password_hash.encode(), hashlib.sha256).hexdigest()[:24]


def signed_in(user: User) -> SignedInUser:
    return SignedInUser(
        user.id, user.email, user.role, f"{user.id}:{_fingerprint(user)}", user.time_zone
    )


def _load_user(session_id: str) -> SignedInUser | None:
    user_id, _, fingerprint = session_id.partition(":")
    if not user_id.isdigit():
        return None
    user = current_session().get(User, int(user_id))
    if user is None or not user.active:
        return None
    if not hmac.compare_digest(fingerprint, _fingerprint(user)):
        return None
    return signed_in(user)


def web_user() -> SignedInUser:
    """The logged-in user of this request (only after the log-in check)."""
    user = current_user._get_current_object()
    assert isinstance(user, SignedInUser)
    return user


def public_endpoint(view: F) -> F:
    """Mark a view as reachable without logging in (log-in page, health)."""
    view.sluice_public = True  # type: ignore[attr-defined]
    return view


def _is_public() -> bool:
    if request.endpoint is None or request.endpoint == "static":
        return True  # a 404 or a static file
    if request.blueprint in PUBLIC_BLUEPRINTS:
        return True
    view = current_app.view_functions.get(request.endpoint)
    return bool(getattr(view, "sluice_public", False))


def _require_login() -> BaseResponse | None:
    if _is_public() or current_user.is_authenticated:
        return None
    response: BaseResponse = login_manager.unauthorized()
    return response


def require_role(*roles: Role) -> None:
    """Abort with 403 unless the logged-in user has one of ``roles``."""
    if not current_user.is_authenticated or web_user().role not in roles:
        abort(403)


def role_required(*roles: Role) -> Callable[[F], F]:
    """A view decorator: only users with one of ``roles`` (else 403)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            require_role(*roles)
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


def safe_next(target: str | None) -> str:
    """``target`` when it is a path on this site, else the dashboard."""
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(char) < 32 for char in target)
    ):
        return target
    return url_for("ui.dashboard")


def _unauthorized() -> BaseResponse:
    if request.method == "GET":
        flash("Log in to see this page.", "info")
        return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))
    return redirect(url_for("ui.login"))


def _forbidden(error: Exception) -> tuple[str, int]:
    return render_template("ui/forbidden.html"), 403


def init_access(app: Flask, secure_cookies: bool) -> None:
    """Sessions, the log-in check and roles for ``app`` (see the rules)."""
    app.config.update(
        SESSION_COOKIE_NAME="sluice_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure_cookies,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        # No "remember me" cookie: a session ends with its lifetime.
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=secure_cookies,
    )
    login_manager.init_app(app)
    login_manager.user_loader(_load_user)
    login_manager.unauthorized_handler(_unauthorized)
    app.before_request(_require_login)
    app.register_error_handler(403, _forbidden)
