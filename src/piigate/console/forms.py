"""Reading a console form: ``application/x-www-form-urlencoded`` fields as plain strings (the
last value of a repeated field wins; files are refused)."""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import Request

from piigate.errors import BadRequest

__all__ = ["form_fields"]

_MAX_FIELDS = 64


async def form_fields(request: Request) -> dict[str, str]:
    """The form's fields; ``BadRequest`` for anything but a small urlencoded form."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadRequest("send the form as application/x-www-form-urlencoded")
    form = await request.form(max_files=0, max_fields=_MAX_FIELDS)
    fields: dict[str, str] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            raise BadRequest("files are not accepted here")
        fields[name] = value
    return fields
