"""The portal's HTML forms as plain data: form fields in, model input and per-field messages
out. Validation itself stays in the models (``kitchencam.models``), as for the API."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from kitchencam.httperrors import validation_fields

Form = Mapping[str, object]

CAMERA_TEXT_FIELDS = ("name", "location", "url", "username", "substream_url", "transport")
RESTAURANT_FIELDS = ("name", "address", "district", "licence_number", "contact")
OPTIONAL_CAMERA_FIELDS = ("username", "substream_url")


def text(form: Form, name: str) -> str:
    """A form field as text ("" when missing or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def camera_input(form: Form, *, editing: bool) -> dict[str, object]:
    """``CameraCreate``/``CameraUpdate`` input from the camera form. Empty optional fields
    mean none; an empty password means none when adding and "keep it" when editing (unless
    "remove the password" is ticked); the ``enabled`` box is a checkbox."""
    data: dict[str, object] = {name: text(form, name).strip() for name in CAMERA_TEXT_FIELDS}
    for name in OPTIONAL_CAMERA_FIELDS:
        if data[name] == "":
            data[name] = None
    if not data["transport"]:
        data["transport"] = "tcp"
    password = text(form, "password")
    if editing and text(form, "remove_password"):
        data["password"] = None
    elif password:
        data["password"] = password
    elif not editing:
        data["password"] = None
    data["enabled"] = bool(text(form, "enabled"))
    return data


def shown(data: Mapping[str, object]) -> dict[str, object]:
    """Values to put back into a form after an error: everything but the password."""
    return {k: v for k, v in data.items() if k != "password"}


def field_errors(err: ValidationError) -> dict[str, str]:
    """One message per form field (the first), named as the form names them."""
    errors: dict[str, str] = {}
    for item in validation_fields(err):
        name = item["field"].split(".")[0]
        errors.setdefault(name, item["message"])
    return errors


def restaurant_input(form: Form) -> dict[str, object]:
    """``RestaurantCreate`` input from the sign-up form."""
    return {name: text(form, name).strip() for name in RESTAURANT_FIELDS}
