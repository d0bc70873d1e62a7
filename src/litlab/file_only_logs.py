"""Log records for the run's log file only.

A user error is printed once, as one paragraph on stderr; the same message also goes to the
run's ``<task>.log`` so the file tells the whole story. Records logged with ``extra=FILE_ONLY``
are kept off the console by :class:`ConsoleFilter`, which ``conf/hydra/default.yaml`` puts on
Hydra's console handler.
"""

from __future__ import annotations

import logging

FILE_ONLY = {"file_only": True}


class ConsoleFilter(logging.Filter):
    """Drops records marked :data:`FILE_ONLY`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)
