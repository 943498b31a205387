"""`flask reconcile` and `flask prune`: the periodic tasks, for cron or by hand."""
import click

from .reconcile import reconcile
from .retention import prune_jobs


def register_cli(app):
    @app.cli.command("reconcile")
    def reconcile_command():
        """Fail running jobs whose worker is gone; enqueue queued jobs Redis lost."""
        summary = reconcile()
        for key, value in summary.items():
            click.echo(f"{key}: {value}")

    @app.cli.command("prune")
    @click.option("--keep-last", type=int, default=None, help="Jobs kept per spec (JOB_RETENTION_COUNT).")
    @click.option("--failed-log-days", type=int, default=None, help="Days failed logs are kept (FAILED_LOG_RETENTION_DAYS).")
    def prune_command(keep_last, failed_log_days):
        """Delete old jobs and old failed logs."""
        summary = prune_jobs(keep_last=keep_last, failed_log_days=failed_log_days)
        for key, value in summary.items():
            click.echo(f"{key}: {value}")
