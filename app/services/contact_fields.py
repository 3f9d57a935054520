"""A contact's custom fields, edited on the contact's page: change a value,
clear it, add a field.

The rules are the CSV import's (``contact_csv``), called rather than
copied, so a field added here is one an import could have added and the
other way round:

- a name is trimmed; it may not be blank, be a contact field under any of
  the import's spellings (``E-mail``, ``first_name``, ``Surname`` …: those
  are edited as fields of their own), or a column the import skips
  (``sluice_row``, ``email_status`` …); at most 200 characters, no NUL.
  Names that differ only in letter case are one field: adding ``plan`` to
  a contact with ``Plan`` is refused (change ``Plan`` instead);
- a value is kept as typed, at most 10,000 characters, no NUL; a blank
  value removes the field (templates read a missing and an empty field
  alike). Browsers send line breaks as CR LF: they are stored as LF;
- every change is checked before any is made: one bad field and nothing is
  saved, and each error names its field;
- a value that is not text (a list given through the services) is shown as
  text and stays as it is unless its text is changed.

A template reads a field by the placeholder ``custom_field_placeholder``
names (``{{ plan }}``, or ``{{ custom['Key with spaces'] }}``), which
``CustomFieldRow.placeholder`` shows on the page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import Contact
from app.services.contact_csv import (
    custom_name_key,
    custom_name_problem,
    custom_value_problem,
    header_field,
    is_blank_custom_value,
    is_skipped_column,
)
from app.services.contacts import ContactError
from app.services.messages import CONTACT_FIELDS
from app.services.rendering import custom_field_placeholder

# Keys of ``CustomFieldErrors.new``: the new field's name and value.
NEW_NAME = "name"
NEW_VALUE = "value"


@dataclass(frozen=True)
class CustomFieldRow:
    """One custom field as the page shows it."""

    key: str
    text: str
    placeholder: str

    @property
    def multiline(self) -> bool:
        # A text input would drop the line breaks of such a value.
        return "\n" in self.text or "\r" in self.text


@dataclass(frozen=True)
class CustomFieldEdit:
    """What the page posts: each shown field's key with its text (blank:
    remove the field), and a new field (both blank: none)."""

    values: Mapping[str, str] = field(default_factory=dict)
    new_name: str = ""
    new_value: str = ""


@dataclass(frozen=True)
class CustomFieldChanges:
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


class CustomFieldErrors(ContactError):
    """Nothing was changed. ``fields``: a shown field's key → its error;
    ``new``: ``NEW_NAME`` / ``NEW_VALUE`` → the new field's errors."""

    def __init__(self, fields: dict[str, str], new: dict[str, str]) -> None:
        self.fields = fields
        self.new = new
        problems = [f"{key}: {message}" for key, message in fields.items()]
        problems += [f"new field's {part}: {message}" for part, message in new.items()]
        super().__init__("; ".join(problems))


def custom_field_text(value: object) -> str:
    """A stored value as the page shows it: text as it is, a list as a
    template outputs it (joined by ", ")."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(custom_field_text(item) for item in value)
    return str(value)


def placeholder_for(key: str) -> str:
    """What a template writes to read the custom field ``key``."""
    return custom_field_placeholder(key, CONTACT_FIELDS)


def custom_field_rows(contact: Contact) -> list[CustomFieldRow]:
    """The contact's custom fields by name (letter case ignored)."""
    fields = contact.custom_fields or {}
    return [
        CustomFieldRow(key, custom_field_text(fields[key]), placeholder_for(key))
        for key in sorted(fields, key=lambda key: (custom_name_key(key), key))
    ]


def custom_field_name_problem(name: str, taken: Iterable[str]) -> str | None:
    """Why a new custom field cannot be called ``name`` (already trimmed)
    on a contact whose fields are ``taken``, or None."""
    if not name:
        return "name the field"
    contact_field = header_field(name)
    if contact_field is not None:
        label = "type" if contact_field == "audience_type" else contact_field.replace("_", " ")
        return f"{name!r} is the contact's {label}, a field of its own: change it above"
    if is_skipped_column(name):
        return f"{name!r} is a column of Sluice's own files, which an import skips: choose another"
    problem = custom_name_problem(name)
    if problem is not None:
        return f"the name {problem}"
    for key in taken:
        if custom_name_key(key) == custom_name_key(name):
            return f"the contact has a field {key!r} already: change its value instead"
    return None


def _line_breaks(text: str) -> str:
    """Browsers post a textarea's line breaks as CR LF."""
    return text.replace("\r\n", "\n")


def edit_custom_fields(
    session: Session, contact: Contact, edit: CustomFieldEdit, clock: Clock
) -> CustomFieldChanges:
    """Apply ``edit`` to ``contact``'s custom fields (the module's rules).
    Raises ``CustomFieldErrors`` before anything is changed. Flushes; the
    caller commits."""
    current = dict(contact.custom_fields or {})
    result = dict(current)
    errors: dict[str, str] = {}
    for key, posted in edit.values.items():
        text = _line_breaks(posted)
        if key in current and text == _line_breaks(custom_field_text(current[key])):
            continue  # unchanged: keep the stored value (a list stays a list)
        if is_blank_custom_value(text):
            result.pop(key, None)
            continue
        # A key the contact no longer has (a form older than a change made
        # elsewhere, or a forged one) is a new field and checked as one.
        others = [other for other in result if other != key]
        problem = custom_value_problem(text) or (
            None if key in current else custom_field_name_problem(key.strip(), others)
        )
        if problem is not None:
            errors[key] = problem
            continue
        result[key.strip() if key not in current else key] = text
    new_errors = _add_new(result, edit)
    if errors or new_errors:
        raise CustomFieldErrors(errors, new_errors)
    changes = CustomFieldChanges(
        added=tuple(key for key in result if key not in current),
        changed=tuple(key for key in result if key in current and result[key] != current[key]),
        removed=tuple(key for key in current if key not in result),
    )
    if changes:
        contact.custom_fields = result
        contact.updated_at = clock.now()
        session.flush()
    return changes


def _add_new(result: dict[str, object], edit: CustomFieldEdit) -> dict[str, str]:
    """Add the new field to ``result``; its errors (nothing added) by part."""
    name = edit.new_name.strip()
    value = _line_breaks(edit.new_value)
    if not name and is_blank_custom_value(value):
        return {}
    errors: dict[str, str] = {}
    name_problem = custom_field_name_problem(name, result)
    if name_problem is not None:
        errors[NEW_NAME] = name_problem
    if is_blank_custom_value(value):
        errors[NEW_VALUE] = "enter a value: a field without one is not kept"
    elif (value_problem := custom_value_problem(value)) is not None:
        errors[NEW_VALUE] = value_problem
    if not errors:
        result[name] = value
    return errors
