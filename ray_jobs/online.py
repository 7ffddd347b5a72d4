"""Ray job: the online stage, the stream replayed through the actor pair (``crossadapt online``).

Starts from the offline results in ``out_dir`` (run ``transfer.py`` first) or from ``--teacher`` and
``--student`` checkpoints.

    python ray_jobs/online.py --config configs/demo.yaml [--set KEY=VALUE ...] [--out DIR]
    ray job submit --working-dir . -- python ray_jobs/online.py --config configs/demo.yaml \
        --set out_dir=/mnt/shared/runs/demo --set data.root=/mnt/shared/data
"""

from _job import run  # ray_jobs/ is sys.path[0] when a script here runs

if __name__ == "__main__":
    run("online")
