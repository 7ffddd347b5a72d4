"""What every script in ``ray_jobs/`` shares: run one ``crossadapt`` subcommand with its arguments.

Each job script is ``run("<subcommand>")``: the same parsing, typed config and library calls as the
``crossadapt`` command, so a job behaves alike on a laptop (``python ray_jobs/<job>.py``: Ray starts
locally) and on a cluster (``ray job submit ... -- python ray_jobs/<job>.py``: Ray is joined through
the ``RAY_ADDRESS`` the job runs with; see ``crossadapt.ray_init.init_ray``). Every check of the
command runs before Ray is joined (``crossadapt.experiment.preflight``).

Under ``ray job submit --working-dir .`` the job runs in Ray's temporary copy of the working dir: the
config's relative paths resolve inside that copy, so ``out_dir`` and ``data.root`` must be absolute
paths every node sees (``--set out_dir=/mnt/shared/...``; a relative one is refused, naming the key),
unless the job's env_vars set ``CROSSADAPT_SUBMIT_DIR`` to the submitted folder (then relative paths
resolve there, as in a local run; see ``crossadapt.paths``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# The code beside this script comes first on the path: a job then runs the working dir it was
# submitted with even where another copy of crossadapt is installed, and a plain checkout needs no
# install. (`ray job submit --working-dir` puts it on PYTHONPATH too; `python ray_jobs/x.py` does not.)
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from crossadapt.cli import main  # noqa: E402  (needs the path above)


def run(command: str, argv: list[str] | None = None) -> None:
    """Exit with the status of ``crossadapt <command> <argv>`` (default: this process's arguments)."""
    sys.exit(main([command, *(sys.argv[1:] if argv is None else argv)]))
