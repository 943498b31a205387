"""The build worker: an RQ worker on the RQ_QUEUE queue, with the app's context.

    python worker.py          (Procfile: worker: python worker.py)

The app is created once, before RQ forks a work horse per job, so each job starts
quickly; the job function disposes of inherited database connections. HerokuWorker
handles SIGTERM the way Procfile hosts send it: the running job gets a few seconds
to stop its build and write its final state. Beside it run the reconciler (stale
heartbeats, jobs Redis lost, builds a killed worker left in Podman, retention;
app/ops/reconcile.py), the base-image watch (app/watch/base_check.py), the shared
cache fetched ahead (app/builds/prefetch.py, on this host's own queue) and RQ's
scheduler, which puts back the jobs that waited for another build of the same spec.
"""
import logging
import os

from rq.serializers import JSONSerializer
from rq.worker import HerokuWorker

from app import create_app
from app.builds.orphans import sweep_orphan_builds
from app.builds.prefetch import host_queue
from app.builds.queue import build_queue, redis_connection
from app.notify import notify_queue
from app.ops.forkguard import prepare_for_forks
from app.ops.reconcile import run_periodically
from app.watch.base_check import start_scheduled_checks

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s pid=%(process)d %(message)s"


def main():
    app = create_app()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=True)
    prepare_for_forks()  # before the threads below: RQ forks a horse per job beside them
    with app.app_context():
        connection = redis_connection()
        queue = build_queue(connection)
        worker = HerokuWorker(
            # Webhooks first (they take a moment, builds wait little); this build host's own
            # queue last: fetching the shared cache ahead (app/builds/prefetch.py) never
            # delays a build.
            [notify_queue(connection), queue, host_queue(connection)],
            connection=connection,
            serializer=JSONSerializer,
            name=os.environ.get("WORKER_NAME") or None,
        )
        # HerokuWorker's horse gets SIGRTMIN on SIGTERM, then this long to finish up
        # (stop the Podman build, write the job's final state) before it is interrupted.
        worker.imminent_shutdown_delay = int(os.environ.get("WORKER_SHUTDOWN_GRACE", "6"))
        logging.getLogger(__name__).info(
            "worker %s listening on queue %s (podman %s, registry %s)",
            worker.name, queue.name, app.config["PODMAN_URL"], app.config["REGISTRY"],
        )
        # A build a killed worker left running on this host's Podman service stops now,
        # before this worker takes new jobs (then on every reconciler pass).
        sweep_orphan_builds(app.config["PODMAN_URL"])
        run_periodically(app)
        start_scheduled_checks(app)
        worker.work(logging_level="INFO", log_format=LOG_FORMAT, with_scheduler=True)


if __name__ == "__main__":
    main()
