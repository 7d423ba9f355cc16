"""`python -m corral.scheduler`: the admission loop as `corral serve` runs it, in a plain
child process (not multiprocessing, which would leave its resource tracker behind) that
reads its settings from the same CORRAL_* environment and ends when its parent does."""

import faulthandler
import signal

from corral.scheduler.loop import run_process
from corral.settings import Settings

if __name__ == "__main__":
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # as serve: stacks to the log
    except (RuntimeError, ValueError, OSError, AttributeError):
        pass  # no stderr to write to
    settings = Settings()
    run_process(settings.resolved_database_url(), settings.scheduler_poll_s, settings.starvation_after_s,
                until_stdin_closes=True, unhealthy_after_s=settings.cluster_unhealthy_after_s)
