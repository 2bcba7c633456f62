"""The Celery application. Tasks live in each app's ``tasks.py``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provenance.settings")

app = Celery("provenance")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


if os.environ.get("PROVENANCE_SQL_COUNT_DIR"):
    # Measurement only (bench/scan_pipeline.py): count the SQL statements this worker process runs and write the
    # running total to <dir>/<pid> after each task. Off unless the variable is set.
    import collections
    import json
    import re
    from pathlib import Path

    from celery.signals import task_postrun, worker_process_init

    _counted = [0]
    _shapes: collections.Counter[str] = collections.Counter()

    def _count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        _counted[0] += 1
        _shapes[re.sub(r"\d+", "N", sql[:90])] += 1
        if _counted[0] % 100 == 0:  # also while a long task runs: a reader is at most 100 behind
            Path(os.environ["PROVENANCE_SQL_COUNT_DIR"], str(os.getpid())).write_text(str(_counted[0]))
        return execute(sql, params, many, context)

    def _install_counter(**kwargs: object) -> None:
        from django.db import connections

        for connection in connections.all():  # the wrapper list outlives reconnections: install once
            if _count not in connection.execute_wrappers:
                connection.execute_wrappers.append(_count)

    def _write_count(**kwargs: object) -> None:
        folder = Path(os.environ["PROVENANCE_SQL_COUNT_DIR"])
        (folder / str(os.getpid())).write_text(str(_counted[0]))
        (folder.parent / f"sql-shapes-{os.getpid()}.json").write_text(json.dumps(_shapes.most_common(25)))

    worker_process_init.connect(_install_counter, weak=False)
    task_postrun.connect(_write_count, weak=False)
