"""Running on Slurm: a fix for the executor plugin's account handling.

snakemake-executor-plugin-slurm 2.8.0 (pinned in pyproject.toml) offers ``--slurm-no-account``
("do not use any account for submission") but never reads it: without a ``slurm_account``
resource it always guesses one with ``sacct -nu USER -o Account%256 | tail -1``, run without a
shell, so that sacct receives ``|``, ``tail`` and ``-1`` as arguments and fails ("sacct: invalid
option -- '1'"), which it reports as a warning before submitting without ``-A``. On a cluster
without accounts (or without accounting) that guess is pure noise, and where it succeeds it may
pick an account nobody asked for.

:func:`honour_no_account` makes the flag do what it says: with ``slurm-no-account: true``
(set by ``profiles/slurm`` whenever ``BPAITAC_SLURM_ACCOUNT`` is unset) and no
``slurm_account`` resource, jobs are submitted without ``-A`` and nothing is guessed. An
explicit ``slurm_account`` keeps the plugin's own behaviour (validated with sacctmgr/sshare).
The workflow calls it in the Snakemake main process (workflow/rules/common.smk).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_MARK = "_bpaitac_honours_no_account"


def honour_no_account() -> bool:
    """Patch the installed Slurm executor so that ``--slurm-no-account`` means no ``-A`` and no
    account guessing. Idempotent; False when the plugin is not installed (nothing to do)."""
    try:
        from snakemake_executor_plugin_slurm import Executor
    except ImportError:
        return False
    original = Executor.get_account_arg
    if getattr(original, _MARK, False):
        return True

    def get_account_arg(self: Any, job: Any) -> Iterator[str]:
        settings = getattr(self.workflow, "executor_settings", None)
        if not job.resources.get("slurm_account") and getattr(settings, "no_account", False):
            yield ""  # the sbatch call gets no -A
            return
        yield from original(self, job)

    get_account_arg.__doc__ = original.__doc__
    setattr(get_account_arg, _MARK, True)
    Executor.get_account_arg = get_account_arg
    return True
