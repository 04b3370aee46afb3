"""A stopped server exits even when a thread it does not own never ends."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import logging, threading, time
    from tossit.serve import exit_despite_threads
    logging.basicConfig(level=logging.INFO)
    threading.Thread(target=time.sleep, args=(3600,), name="stuck-driver").start()
    threading.Thread(target=time.sleep, args=(0.2,), name="finishing").start()
    exit_despite_threads(1.0)
    print("not reached")
""")


def test_a_thread_that_never_ends_is_named_and_left_behind() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0
    assert "not reached" not in done.stdout
    assert "thread 'stuck-driver' still running" in done.stderr
    assert "threading.py" in done.stderr  # with where it stands
    assert "'finishing'" not in done.stderr  # it ended within the grace
    assert "exiting without 1 thread(s)" in done.stderr


def test_without_threads_left_it_returns() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT.replace(
        "threading.Thread(target=time.sleep, args=(3600,)", "threading.Thread(target=time.sleep, "
        "args=(0.1,)")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "not reached" in done.stdout
    assert "still running" not in done.stderr
