"""Flask extensions, created unbound and attached in ``create_app``."""

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Session

from app.models.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()


def current_session() -> Session:
    """The request's (or app context's) SQLAlchemy session, typed as a plain
    ``Session`` so services never depend on Flask-SQLAlchemy."""
    return db.session()
