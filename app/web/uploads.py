"""Uploads: the request class of the app (``init_web`` sets it).

- **Size.** Every request body is at most ``MAX_CONTENT_LENGTH`` (6 MB),
  except on the endpoints of ``LARGE_UPLOAD_ENDPOINTS`` (the contacts CSV
  import), whose limit is ``LARGE_UPLOAD_CONFIG_KEY`` (the import's maximum
  plus 1 MB for the form's other fields). The limit is decided from the
  matched endpoint, before the CSRF check reads the form; werkzeug refuses
  a bigger body with 413 before reading it.
- **Spooling.** A file part over 500 KB is spooled to an anonymous
  temporary file in the instance folder (werkzeug's default is the system's
  temporary folder, often a RAM disk), so a 200 MB upload never sits in
  memory; the file is gone when the request ends whatever happens.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO, Final

from flask import Request, current_app

LARGE_UPLOAD_ENDPOINTS: Final = frozenset({"contacts.import_upload"})
LARGE_UPLOAD_CONFIG_KEY: Final = "SLUICE_LARGE_UPLOAD_MAX_BYTES"
SPOOL_FOLDER: Final = "uploading"
_IN_MEMORY_MAX: Final = 500 * 1024  # werkzeug's own threshold


class SluiceRequest(Request):
    @property
    def max_content_length(self) -> int | None:
        if (
            self._max_content_length is None
            and current_app
            and self.endpoint in LARGE_UPLOAD_ENDPOINTS
            and LARGE_UPLOAD_CONFIG_KEY in current_app.config
        ):
            return int(current_app.config[LARGE_UPLOAD_CONFIG_KEY])
        return super().max_content_length

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        if total_content_length is not None and total_content_length <= _IN_MEMORY_MAX:
            return super()._get_file_stream(
                total_content_length, content_type, filename, content_length
            )
        folder = Path(current_app.instance_path) / SPOOL_FOLDER
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return tempfile.TemporaryFile("rb+", dir=folder)
