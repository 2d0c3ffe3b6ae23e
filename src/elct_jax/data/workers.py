"""Worker processes of dataset generation, and its graceful stop on SIGINT / SIGTERM.

``run_tasks`` runs ``function(task)`` for each task in spawned worker processes, each with its own pipe:
a worker that dies (killed, out of memory) loses only the task it was running, which comes back with
the reason, and is replaced. ``stop_on_signals`` turns SIGINT and SIGTERM into a :class:`StopRequest`:
after the first signal no new task starts and the tasks in progress finish; a second one raises
:class:`Interrupted` at once (``run_tasks`` then terminates its workers). Workers ignore SIGINT (a
terminal's Ctrl-C reaches the whole process group: the parent decides) and exit when their pipe
closes, so none outlives the generator; multiprocessing's resource-tracker process exits by itself
as soon as the parent and the workers have.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections import deque
from multiprocessing.connection import wait
from typing import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SHUTDOWN_TIMEOUT_S = 30.0
FINISH_TASKS = "finishing the structure(s) in progress, starting no new ones"


class Interrupted(KeyboardInterrupt):
    """Generation or training (``train.loop.fit``) stopped by signal ``signum`` (SIGINT: Ctrl-C, or SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class StopRequest:
    """Signal handler: ``signum`` is the first stop signal received (None: none yet); a second signal
    raises :class:`Interrupted`. ``doing``: what the first signal starts, as its message says."""

    def __init__(self, doing: str = FINISH_TASKS):
        self.signum, self.doing = None, doing

    def __call__(self, signum, frame) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum
        name = signal.Signals(signum).name
        # os.write, not print: a handler may run inside the main thread's own write to stderr
        os.write(2, f"\n{name} received: {self.doing} ({name} again stops at once)\n".encode())


@contextlib.contextmanager
def stop_on_signals(doing: str = FINISH_TASKS) -> Iterator[StopRequest]:
    """A StopRequest(doing) that SIGINT and SIGTERM set while the block runs (Python lets only the main
    thread install handlers: elsewhere the request is never set)."""
    stop = StopRequest(doing)
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_tasks(function: Callable, tasks: list, n_workers: int, stop: StopRequest, env: dict[str, str],
              initializer: Callable | None = None, initargs: tuple = ()) -> Iterator[tuple]:
    """Yield (task, result, error) as tasks finish: result = function(task) with error None, or result
    None and error the reason when the worker process running the task died.

    n_workers    spawned worker processes (a dead one is replaced); 0 runs the tasks in this process
    stop         no task starts once ``stop.signum`` is set
    env          environment variables of the workers (set while they start)
    initializer  called with ``initargs`` in each worker before its first task
    """
    if n_workers == 0:
        for task in tasks:
            if stop.signum is not None:
                return
            yield task, function(task), None
        return
    pending, idle, busy = deque(tasks), [], {}  # busy: {worker: its task}
    try:
        while True:
            while pending and stop.signum is None and (idle or len(busy) < n_workers):
                worker = idle.pop() if idle else _Worker(function, env, initializer, initargs)
                with contextlib.suppress(OSError):  # it died: receive() below reports it with this task
                    worker.conn.send(pending[0])
                busy[worker] = pending.popleft()
            if not busy:
                return
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            finished = []
            for worker in [w for w in busy if w.conn in ready or w.process.sentinel in ready]:
                result, error = worker.receive()
                finished.append((busy.pop(worker), result, error))
                if error is None:
                    idle.append(worker)
            yield from finished
    finally:
        for worker in idle:
            worker.close()
        for worker in busy:  # only after an exception or an abandoned generator
            worker.terminate()


def thread_environment(threads: int) -> dict[str, str]:
    """The OpenMP / BLAS thread counts of spawned workers (read at their start-up)."""
    return {name: str(threads) for name in THREAD_VARS}


def set_pyscf_threads(threads: int) -> None:
    """Worker initializer: PySCF's own thread count."""
    from pyscf import lib

    lib.num_threads(threads)


class _Worker:
    """One spawned process serving tasks over its own pipe."""

    def __init__(self, function: Callable, env: dict[str, str], initializer: Callable | None, initargs: tuple):
        context = multiprocessing.get_context("spawn")  # never fork a process that may hold JAX threads
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, function, initializer, initargs), daemon=True)
        with _spawn_environment(env):
            self.process.start()
        child.close()

    def receive(self) -> tuple:
        """(result, None), or (None, reason) when the process died before sending a result."""
        with contextlib.suppress(EOFError, OSError):
            if self.conn.poll():
                return self.conn.recv(), None
        self.process.join()
        code = self.process.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        self.conn.close()
        return None, f"worker process died ({how})"

    def close(self) -> None:
        """Ask the process to exit and wait for it (terminated after SHUTDOWN_TIMEOUT_S)."""
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(SHUTDOWN_TIMEOUT_S)
        self.terminate()

    def terminate(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        self.conn.close()


def _serve(conn, function: Callable, initializer: Callable | None, initargs: tuple) -> None:
    """Worker process: run tasks from ``conn`` until None or the parent's end closes."""
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(function(task))


@contextlib.contextmanager
def _spawn_environment(env: dict[str, str]):
    """``env`` in os.environ and SIGINT ignored while a child starts (it inherits both across exec)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    in_main = threading.current_thread() is threading.main_thread()
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
    try:
        yield
    finally:
        if in_main:
            signal.signal(signal.SIGINT, handler)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
