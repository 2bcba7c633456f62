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
        return execute(sql, params, many, context)

    def _install_counter(**kwargs: object) -> None:
        from django.db.backends.signals import connection_created

        def add(sender: object, connection: object, **kw: object) -> None:
            wrappers = connection.execute_wrappers  # type: ignore[attr-defined]
            if _count not in wrappers:  # the wrapper object outlives reconnections: count each statement once
                wrappers.append(_count)

        connection_created.connect(add, weak=False)

    def _write_count(**kwargs: object) -> None:
        folder = Path(os.environ["PROVENANCE_SQL_COUNT_DIR"])
        (folder / str(os.getpid())).write_text(str(_counted[0]))
        (folder.parent / f"sql-shapes-{os.getpid()}.json").write_text(json.dumps(_shapes.most_common(25)))

    worker_process_init.connect(_install_counter, weak=False)
    task_postrun.connect(_write_count, weak=False)
