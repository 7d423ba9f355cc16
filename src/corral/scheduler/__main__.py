"""`python -m corral.scheduler`: the admission loop as `corral serve` runs it, in a plain
child process (not multiprocessing, which would leave its resource tracker behind) that
reads its settings from the same CORRAL_* environment and ends when its parent does."""

from corral.scheduler.loop import run_process
from corral.settings import Settings
from corral.stack_dump import dump_stacks_on_sigusr1

if __name__ == "__main__":
    dump_stacks_on_sigusr1()  # as serve: stacks to its output
    settings = Settings()
    run_process(settings.resolved_database_url(), settings.scheduler_poll_s, settings.starvation_after_s,
                until_stdin_closes=True, unhealthy_after_s=settings.cluster_unhealthy_after_s)
