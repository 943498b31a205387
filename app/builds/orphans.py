"""Builds left running in Podman by a worker that died (SIGKILL, a crash, a lost service).

Podman 4.3 carries a build on when its client goes away, so a dead worker's build would
keep its RUN step and working container until it ends by itself. Each build is therefore
announced by a claim: a small file named after its Podman service and its job, held with
an exclusive lock (flock) by the process that follows the build. The kernel drops the
lock when that process dies, however it dies.

The runner removes its claim when the build is known to be over in Podman. A claim left
behind unlocked is an orphan: `sweep_orphan_builds` (run at worker start-up and by the
reconciler) kills its RUN steps and removes its working containers, the way a cancel
does, then drops its half-built tag and the claim.

Claims live on the build host, where the worker can also signal the service's processes
(see podman.kill_run_steps): every worker of a build host sweeps for all of them.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass

from .podman import BuildHandle, Podman, PodmanFailure, kill_run_steps, parse_time

log = logging.getLogger(__name__)

# Workers on one build host must share this folder (no systemd PrivateTmp between them).
CLAIMS_ROOT = os.environ.get("BUILD_CLAIMS_DIR") or os.path.join(tempfile.gettempdir(), "imagebuilder-builds")


def claim_prefix(podman_url: str) -> str:
    """Claims of builds on one Podman service are named <prefix>.<RQ job id>.json."""
    return hashlib.sha256(podman_url.encode()).hexdigest()[:16] + "."


def claim_path(podman_url: str, job: str) -> str:
    return os.path.join(CLAIMS_ROOT, f"{claim_prefix(podman_url)}{job}.json")


@dataclass
class ClaimRecord:
    job: str  # the RQ job id: unique across installs sharing the build host
    target: str
    base_image_id: str
    started_at: float
    containers_before: list[str]

    def owns(self, container: dict, created: float | None) -> bool:
        """Could `container` belong to this build? Made after it started, not before."""
        if container["Id"] in self.containers_before:
            return False
        return created is None or created >= self.started_at - 2


class BuildClaim:
    """The lock a running build holds; `release(ended)` when the build is done with."""

    def __init__(self, path: str, fd: int):
        self.path = path
        self._fd = fd

    @classmethod
    def take(cls, podman_url: str, job: str, handle: BuildHandle, target: str) -> "BuildClaim":
        os.makedirs(CLAIMS_ROOT, mode=0o700, exist_ok=True)
        path = claim_path(podman_url, job)
        # Locked and written under a name the sweep ignores, then renamed into place: a
        # sweep never sees a claim without its lock or its record.
        partial = f"{path}.{os.getpid()}.new"
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        record = ClaimRecord(job, target, handle.base_image_id, handle.started_at, sorted(handle.containers_before))
        os.write(fd, json.dumps(asdict(record)).encode())
        os.rename(partial, path)
        return cls(path, fd)

    def release(self, ended: bool) -> None:
        """`ended`: the build is over in Podman (its stream ended, or it was stopped), so
        nothing is left to sweep. Otherwise the claim stays for the sweep."""
        try:
            if ended:
                _unlink_if_same(self.path, self._fd)
        finally:
            os.close(self._fd)


def _unlink_if_same(path: str, fd: int) -> None:
    """Remove the claim file `fd` holds, unless a newer claim has taken its name."""
    try:
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            os.unlink(path)
    except FileNotFoundError:
        pass


def _read_claims(podman_url: str) -> tuple[list[ClaimRecord], list[tuple[ClaimRecord, str, int]]]:
    """(live claims, dead claims with their path and the lock fd we now hold)."""
    live, dead = [], []
    prefix = claim_prefix(podman_url)
    try:
        names = sorted(name for name in os.listdir(CLAIMS_ROOT) if name.startswith(prefix))
    except FileNotFoundError:
        return [], []
    for name in names:
        path = os.path.join(CLAIMS_ROOT, name)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            locked = False
        if not name.endswith(".json"):  # a claim being written; its writer died if unlocked
            if locked:
                _unlink_if_same(path, fd)
            os.close(fd)
            continue
        try:
            record = ClaimRecord(**json.loads(os.pread(fd, 1 << 20, 0)))
        except (OSError, ValueError, TypeError):
            record = None
        if not locked:  # its build runs (or another sweep is at it right now)
            os.close(fd)
            if record is not None:
                live.append(record)
        elif record is None:  # unreadable: nothing to find by it
            _unlink_if_same(path, fd)
            os.close(fd)
        else:
            dead.append((record, path, fd))
    return live, dead


def sweep_orphan_builds(podman_url: str) -> list[str]:
    """Stop what dead workers' builds left in the Podman service at `podman_url`.

    Returns the build containers it removed. A container a live build could own is
    never touched; a dead claim is dropped once a sweep finds nothing of it left.
    """
    live, dead = _read_claims(podman_url)
    if not dead:
        return []
    removed = []
    podman = None
    try:
        podman = Podman(podman_url, timeout=30)
        podman.ping()
        containers = [(c, parse_time(c.get("Created"))) for c in podman.build_containers()]
        for record, path, fd in dead:
            mine = [c["Id"] for c, created in containers
                    if record.owns(c, created) and not any(other.owns(c, created) for other in live)]
            for container in mine:
                killed = kill_run_steps(podman_url, container)
                try:
                    podman.remove_container(container)
                except PodmanFailure as exc:
                    log.warning("event=orphan_build_remove_failed container=%s error=%s", container[:12], exc)
                removed.append(container)
                log.warning("event=orphan_build_stopped job=%s container=%s killed_steps=%d",
                            record.job, container[:12], killed)
            if not mine:
                # Nothing of it runs any more: its tag, if the build got that far, goes too
                # (a live build of the same tag keeps it).
                if not any(other.target == record.target for other in live):
                    podman.remove_image(record.target)
                _unlink_if_same(path, fd)
                log.info("event=orphan_build_cleared job=%s", record.job)
    except PodmanFailure as exc:
        log.warning("event=orphan_sweep_skipped podman_url=%s error=%s", podman_url, exc)
    finally:
        for _record, _path, fd in dead:
            os.close(fd)
        if podman is not None:
            podman.close()
    return removed

