"""The verify step with a real build: the manifest read from the built image, the requested
lines checked against it, and the test command run in it, before anything is pushed."""
import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import BuildJob, JobPackage, JobStatus
from integration.support import BASE, PIP_STUB_INSTALL, assert_succeeded, pull_and_run, save_spec

pytestmark = pytest.mark.integration


def packages(stack, job_id):
    with stack.app.app_context():
        rows = db.session.scalars(select(JobPackage).where(JobPackage.job_id == job_id)).all()
        return {(row.manager, row.name): row for row in rows}


def test_the_manifest_lists_what_the_pushed_image_has(stack):
    job = stack.wait_for(save_spec(stack, name="manifest", base_image=BASE, apt="jq\nrgrep", pip="six",
                                   test_command="jq --version && python3 -c 'import six; print(\"six\", six.__version__)'"))
    assert_succeeded(stack, job)

    exit_code, output = pull_and_run(stack, job, "dpkg-query -W -f '${Package} ${Version}\\n' jq grep && "
                                                 "python3 -c 'import six; print(\"six\", six.__version__)'")
    assert exit_code == 0, output
    reported = dict(line.split() for line in output.splitlines())
    jq_version, grep_version, six_version = reported["jq"], reported["grep"], reported["six"]
    rows = packages(stack, job.id)
    assert (rows["apt", "jq"].version, rows["apt", "jq"].requested) == (jq_version, True)
    # rgrep is a virtual package that grep provides: apt installs grep for it.
    assert (rows["apt", "grep"].version, rows["apt", "grep"].requested) == (grep_version, True)
    assert (rows["pip", "six"].version, rows["pip", "six"].requested) == (six_version, True)
    assert rows["apt", "dpkg"].requested is False and rows["apt", "jq"].arch == "amd64"
    assert job.packages_count == len(rows) > 100
    assert job.os_name == "Debian GNU/Linux 12 (bookworm)" and job.image_user == "root"

    log = stack.log_text(job.id)
    assert log.index("==> [4/6] Verifying") < log.index("==> [5/6] Pushing")
    assert "All 3 requested package(s) are installed as the spec asks." in log
    # The test command's own output, in the log as it printed it.
    assert "Running the test command: jq --version" in log
    assert f"\njq-{jq_version.split('-')[0]}" in log and f"\nsix {six_version}\n" in log
    assert "The test command passed (exit 0)." in log


def test_a_failing_test_command_fails_the_job_and_nothing_is_pushed(stack):
    job = stack.wait_for(save_spec(stack, name="tested", base_image=BASE, apt="jq",
                                   test_command="echo checking the image as $(id -un); exit 3"))
    assert job.status == JobStatus.FAILED
    assert job.error == "The test command failed (exit 3); nothing was pushed."
    log = stack.log_text(job.id)
    assert "\nchecking the image as root\n" in log and "==> [5/6] Pushing" not in log
    assert stack.registry_client().tags(f"it-{stack.sid}/tested") == []
    with stack.app.app_context():
        assert db.session.get(BuildJob, job.id).packages_count > 100  # the manifest is kept


def test_a_version_that_does_not_satisfy_its_line_fails_before_the_push(stack):
    # A pip that installs whatever it is asked at version 1.0, as a stale mirror might.
    stale = stack.build_helper_image(
        "stale-pip", f"FROM {BASE}\nCOPY pip /usr/local/bin/pip\nRUN chmod 755 /usr/local/bin/pip\n",
        {"pip": ("#!/bin/sh\n" + PIP_STUB_INSTALL).encode()},
    )
    job = stack.wait_for(save_spec(stack, name="stale", base_image=stale, apt="jq", pip="six>=1.16"))
    assert job.status == JobStatus.FAILED
    assert job.error == ("The image does not have what the spec asks for: pip line 1 'six>=1.16': installed six 1.0 "
                         "does not satisfy it. Nothing was pushed.")
    assert "==> [5/6] Pushing" not in stack.log_text(job.id)
    assert stack.registry_client().tags(f"it-{stack.sid}/stale") == []
    rows = packages(stack, job.id)
    assert rows["pip", "six"].version == "1.0" and rows["pip", "six"].requested is False
    assert rows["apt", "jq"].requested is True
