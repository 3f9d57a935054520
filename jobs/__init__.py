"""The job runner: APScheduler jobs under stable ids, each a thin entry
point that opens an app context and calls a service (DESIGN.md).

``jobs.scheduler`` holds the job table and the ``JobRunner`` that
``sluice worker`` (alone) and ``sluice run`` (beside the web server) start;
``jobs.recording`` records every run.
"""
