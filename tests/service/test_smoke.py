from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.services.contacts import ContactInput, save_contact


def test_save_contact(session: Session, clock: FixedClock) -> None:
    saved = save_contact(session, ContactInput(email="Ann@Example.COM"), clock)
    assert saved.created
    assert saved.contact.email == "Ann@example.com"
