"""A full disk on the build host, for real (issue 4: "a full disk gives a clear error in the
job log"). A private rootless Podman service of the build user keeps its storage on a small
tmpfs; a RUN step fills it; the job fails with a message that says the disk is full.

The stack's own Podman service (and its storage) is never touched: the private service has
its own storage, run root, runtime directory (so its own user namespace, which sees the
tmpfs) and socket, and all of it is stopped, unmounted and removed afterwards.
"""
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from app.models import JobStatus
from integration.support import BASE, running_stack, save_spec

pytestmark = pytest.mark.integration

BUILD_USER = "imagebuilder"
BASE_TARBALL = Path("/var/cache/imagebuilder/debian-bookworm.tar")  # made by scripts/base-image.sh
DISK_SIZE = "450m"  # the base takes about 200 MB of it
FILL_MARK = "imagebuilder-diskfull: filling the disk"
# A pip that writes more than the disk has left, as a big wheel would.
FILLING_PIP = f"""#!/bin/sh
echo "{FILL_MARK}"
dd if=/dev/zero of=/imagebuilder-fill bs=1M count=600
"""


class DiskFullPodman:
    """A rootless Podman API service of the build user whose storage is a small tmpfs."""

    def __init__(self, name: str):
        user = pwd.getpwnam(BUILD_USER)
        self.uid, self.gid, self.home = user.pw_uid, user.pw_gid, user.pw_dir
        self.workdir = Path(tempfile.mkdtemp(prefix=f"ib-{name}-", dir="/var/tmp"))
        self.disk = self.workdir / "disk"
        # Its own XDG_RUNTIME_DIR: its own pause process and user namespace, made after the
        # tmpfs is mounted (the stack's namespace was made before and would not see it).
        self.runtime_dir = Path(f"/run/user/{self.uid}/ib-{name}-run")
        self.socket = f"/run/user/{self.uid}/podman/{name}.sock"
        self.url = f"unix://{self.socket}"
        self.process = None
        self.mounted = False

    def command(self, *args) -> list[str]:
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                "podman", "--root", str(self.disk / "storage"), "--runroot", str(self.runtime_dir / "storage"),
                *args]

    def env(self) -> dict:
        return {"HOME": self.home, "USER": BUILD_USER, "LOGNAME": BUILD_USER, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
                "XDG_RUNTIME_DIR": str(self.runtime_dir)}

    def start(self):
        os.chmod(self.workdir, 0o755)
        self.disk.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0755", "tmpfs", str(self.disk)],
                       check=True)
        self.mounted = True
        os.chown(self.disk, self.uid, self.gid)
        self.runtime_dir.mkdir(mode=0o700)
        os.chown(self.runtime_dir, self.uid, self.gid)
        done = subprocess.run(self.command("import", str(BASE_TARBALL), BASE), cwd="/", env=self.env(),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"podman import into the small disk failed:\n{done.stderr[-3000:]}"
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.process = subprocess.Popen(
            self.command("system", "service", "--time=0", self.url),
            cwd="/", env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not self.answers():
            assert self.process.poll() is None, "the disk-full podman service exited"
            assert time.monotonic() < deadline, "the disk-full podman service did not come up"
            time.sleep(0.2)

    def answers(self) -> bool:
        done = subprocess.run(["curl", "-fsS", "--max-time", "3", "--unix-socket", self.socket,
                               "http://d/v4.0.0/libpod/_ping"], capture_output=True)
        return done.returncode == 0

    def free_bytes(self) -> int:
        disk = os.statvfs(self.disk)
        return disk.f_bavail * disk.f_frsize

    def stop(self):
        """Everything it started goes: the service's process group, its pause process
        (the user namespace holding the tmpfs), the mount, the directories."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(10)
        pause_pid = self.runtime_dir / "libpod" / "tmp" / "pause.pid"
        try:
            pid = int(pause_pid.read_text().strip())
            with open(f"/proc/{pid}/status") as fh:
                owner = next(int(line.split()[1]) for line in fh if line.startswith("Uid:"))
            if owner == self.uid:
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, StopIteration):
            pass
        if self.mounted:
            if subprocess.run(["umount", str(self.disk)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(self.disk)], check=True)
            self.mounted = False
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def disk_full_podman():
    service = DiskFullPodman(f"diskfull-{os.getpid()}")
    try:
        service.start()
        yield service
    finally:
        service.stop()
    assert not os.path.ismount(service.disk) and not service.runtime_dir.exists()


@pytest.fixture(scope="module")
def disk_full_stack(services, tmp_path_factory, disk_full_podman):
    """A stack whose worker (and helpers) talk only to the disk-full service."""
    with running_stack({**services, "PODMAN_URL": disk_full_podman.url},
                       tmp_path_factory.mktemp("diskfull")) as stack:
        yield stack


def test_a_full_disk_fails_the_build_with_a_clear_error(disk_full_stack, disk_full_podman):
    stack = disk_full_stack
    filling = stack.build_helper_image(
        "filling", f"FROM {BASE}\nCOPY pip /usr/local/bin/pip\nRUN chmod 755 /usr/local/bin/pip\n",
        {"pip": FILLING_PIP.encode()},
    )
    assert disk_full_podman.free_bytes() < 400 * 1024 * 1024, "the fill must not fit on the disk"

    job = stack.wait_for(save_spec(stack, name="disk-full", base_image=filling, pip="six"), timeout=120)
    log = stack.log_text(job.id)
    assert job.status == JobStatus.FAILED, f"{job.status}: {job.error}\n{log[-3000:]}"
    assert FILL_MARK in log, log[-3000:]
    assert "no space left on device" in log.lower(), log[-3000:]
    assert job.error.startswith("The build host ran out of disk space (no space left on device)"), job.error
    assert job.error in log
    assert job.image is None and job.digest is None
    # The failed step's container is gone with the space it took.
    assert disk_full_podman.free_bytes() > 100 * 1024 * 1024
    assert stack.worker.poll() is None
