"""The jobs page's troubleshooting checklist (SPEC §7, the seeds' steps):
when mail does not go out, these are the questions to answer in order.

Rules:

- Each item is a question with a yes/no/unknown answer, the evidence (the
  server's own words where there is a server), and what to do when the
  answer is no. ``ok`` None means the check could not run (not configured
  or not available), which is not the same as a failure.
- **Send Test works** when the SMTP relay accepts a connection with the
  configured TLS and credentials (``connection_checks.check_smtp``).
- **A runner is alive** when some runner's heartbeat is younger than
  ``job_runs.RUNNER_STALE_AFTER``; the freshest heartbeat's age is shown.
- **The jobs are active** when every job of the runner's table is
  scheduled by a live runner.
- **The site URL is reachable** from this server (its ``/healthz``).
- **The bounce mailbox is reachable** over IMAP.
The checks are pure here: the caller runs the network checks and hands in
their results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from app.services.connection_checks import CheckResult
from app.services.durations import format_duration
from app.services.job_runs import JobState, RunnerState


@dataclass(frozen=True)
class ChecklistItem:
    question: str
    ok: bool | None
    answer: str
    advice: str  # what to do when the answer is not yes


def runner_item(runners: Sequence[RunnerState], now: datetime) -> ChecklistItem:
    question = "Is a job runner alive?"
    advice = "Start one: `sluice worker` (or `sluice run` in development); see docs/operations.md."
    alive = [runner for runner in runners if runner.alive]
    if alive:
        age = (now - max(runner.heartbeat_at for runner in alive)).total_seconds()
        return ChecklistItem(
            question, True, f"{len(alive)} alive; last heartbeat {format_duration(age)} ago", advice
        )
    if runners:
        age = (now - runners[0].heartbeat_at).total_seconds()
        return ChecklistItem(
            question, False, f"no; the last heartbeat was {format_duration(age)} ago", advice
        )
    return ChecklistItem(question, False, "no runner has ever started", advice)


def jobs_item(jobs: Sequence[JobState], job_ids: Sequence[str]) -> ChecklistItem:
    question = "Are the scheduled jobs active?"
    inactive = [job.job_id for job in jobs if job.job_id in job_ids and not job.active]
    if not inactive:
        return ChecklistItem(question, True, "yes: " + ", ".join(job_ids), "")
    return ChecklistItem(
        question,
        False,
        "not scheduled by any live runner: " + ", ".join(inactive),
        "A job is active while a live runner schedules it: start a runner, "
        "or look at its log for the job's errors.",
    )


def from_check(question: str, result: CheckResult, advice: str) -> ChecklistItem:
    return ChecklistItem(question, result.ok, result.summary, advice)


def checklist(
    *,
    smtp: CheckResult,
    runners: Sequence[RunnerState],
    jobs: Sequence[JobState],
    job_ids: Sequence[str],
    site: CheckResult,
    mailbox: CheckResult,
    now: datetime,
) -> list[ChecklistItem]:
    """The checklist in the order to work through it (see the module's rules)."""
    return [
        from_check(
            "Does Send Test work (is the SMTP relay reachable)?",
            smtp,
            "Check SLUICE_SMTP_URL (host, port, TLS, user and password) and the "
            "relay's answer above; use the Settings page's Test connection button.",
        ),
        runner_item(runners, now),
        jobs_item(jobs, job_ids),
        from_check(
            "Is the site URL reachable from the server?",
            site,
            "Every tracking and opt-out link starts with the site URL: fix it on "
            "the Settings page, or the web server, proxy or DNS in front of it.",
        ),
        from_check(
            "Is the bounce mailbox reachable?",
            mailbox,
            "Check SLUICE_IMAP_URL (host, port, TLS, user, password and folder).",
        ),
    ]
