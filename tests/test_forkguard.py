"""The fork guard (app/ops/forkguard.py): a fork waits for the pass a worker thread is in,
and the child starts with the guard free. Real os.fork, in this test process."""
import os
import threading
import time

from app.ops.forkguard import no_fork


def fork_and_report() -> tuple[float, bytes]:
    """Fork; the child takes the guard itself and reports. (seconds os.fork took, the
    child's report)."""
    read_end, write_end = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: it must not wait on a guard its parent's thread held
        try:
            with no_fork():
                os.write(write_end, b"child took the guard")
        finally:
            os._exit(0)
    took = time.monotonic() - started
    os.close(write_end)
    report = os.read(read_end, 100)
    os.close(read_end)
    os.waitpid(pid, 0)
    return took, report


def test_a_fork_waits_until_the_threads_pass_ends_and_the_child_starts_free():
    inside, release = threading.Event(), threading.Event()

    def a_pass():
        with no_fork():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=a_pass)
    thread.start()
    assert inside.wait(5)
    threading.Timer(0.5, release.set).start()
    took, report = fork_and_report()
    thread.join(5)
    assert took >= 0.4, f"the fork did not wait for the pass ({took:.3f} s)"
    assert report == b"child took the guard"


def test_without_a_pass_a_fork_does_not_wait():
    took, report = fork_and_report()
    assert took < 0.4 and report == b"child took the guard"


def test_a_thread_in_a_pass_may_fork_itself():
    """The guard is re-entrant: a pass that forks (a subprocess with a preexec hook, say)
    does not wait on itself."""
    result = {}

    def a_pass():
        with no_fork():
            result["took"], result["report"] = fork_and_report()

    thread = threading.Thread(target=a_pass)
    thread.start()
    thread.join(10)
    assert result["report"] == b"child took the guard" and result["took"] < 0.4
