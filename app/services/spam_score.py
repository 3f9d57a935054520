"""SpamAssassin's verdict on a composed message, for the deliverability
bench and the pre-flight check.

Rules:
- Runs ``spamassassin -L -t -x`` (local tests only: no DNS or network rules,
  whose results would depend on the machine; test mode; no user preference
  file created) in a subprocess, with ``HOME`` in a temporary directory so
  nothing is read from or written to a real user's ``~/.spamassassin``.
- Returns None when SpamAssassin is not installed; a run that fails, times
  out or yields no ``X-Spam-Status`` header raises ``SpamCheckError``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

SPAMASSASSIN = "spamassassin"
_STATUS = re.compile(rb"^X-Spam-Status:(.*(?:\r?\n[ \t].*)*)", re.MULTILINE | re.IGNORECASE)
_SCORE = re.compile(r"\bscore=(-?[0-9]+(?:\.[0-9]+)?)")
_REQUIRED = re.compile(r"\brequired=(-?[0-9]+(?:\.[0-9]+)?)")
_TESTS = re.compile(r"\btests=(.*?)(?:\s+[a-z_]+=|$)")


class SpamCheckError(RuntimeError):
    """SpamAssassin is installed but gave no verdict; the message says why."""


@dataclass(frozen=True)
class SpamScore:
    """``score`` against ``threshold`` (spam at or above it) and the names
    of the rules that fired."""

    score: float
    threshold: float
    rules: tuple[str, ...]

    @property
    def is_spam(self) -> bool:
        return self.score >= self.threshold


def parse_spam_status(output: bytes) -> SpamScore:
    """Read ``X-Spam-Status: No, score=X required=Y tests=A,B autolearn=…``
    from the headers SpamAssassin wrote (folded or not)."""
    headers = re.split(rb"\r?\n\r?\n", output, maxsplit=1)[0]
    match = _STATUS.search(headers)
    if match is None:
        raise SpamCheckError("SpamAssassin's output has no X-Spam-Status header")
    # Unfold to a space: SpamAssassin folds after "," in the rule list and
    # between fields; rule names are upper case, field names lower case.
    status = re.sub(r"\r?\n[ \t]+", " ", match.group(1).decode("ascii", "replace"))
    score, required = _SCORE.search(status), _REQUIRED.search(status)
    if score is None or required is None:
        raise SpamCheckError(f"cannot read X-Spam-Status: {status.strip()!r}")
    tests = _TESTS.search(status)
    names = tests.group(1).split(",") if tests else []
    rules = tuple(name.strip() for name in names if name.strip() and name.strip() != "none")
    return SpamScore(float(score.group(1)), float(required.group(1)), rules)


def spam_score(
    message: bytes, timeout: float = 30, command: str = SPAMASSASSIN
) -> SpamScore | None:
    """Score ``message`` with SpamAssassin (``command`` found on PATH);
    None when it is not installed."""
    executable = shutil.which(command)
    if executable is None:
        return None
    with tempfile.TemporaryDirectory(prefix="sluice-spamassassin-") as home:
        try:
            result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
                [executable, "-L", "-t", "-x"],
                input=message,
                capture_output=True,
                timeout=timeout,
                env={
                    "HOME": home,
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "LANG": "C.UTF-8",
                },
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SpamCheckError(f"SpamAssassin took longer than {timeout:g} s") from None
    if result.returncode != 0:
        error = result.stderr.decode("utf-8", "replace").strip()[-500:]
        raise SpamCheckError(f"SpamAssassin exited with {result.returncode}: {error}")
    return parse_spam_status(result.stdout)
