"""`kill -USR1 <pid>` of `corral serve` or of its scheduler writes every thread's stack to
the process's stderr (serve's output), and changes nothing else: what a process that is
slow, or will not stop, is doing."""

import faulthandler
import signal


def dump_stacks_on_sigusr1() -> None:
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
    except (RuntimeError, ValueError, OSError, AttributeError):
        pass  # no stderr to write to (`2>&-`, or an in-process runner): nothing to dump into
