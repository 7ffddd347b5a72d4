"""Ray job: the offline stage, teacher -> projection -> every method over seeds (``crossadapt transfer``).

    python ray_jobs/transfer.py --config configs/demo.yaml [--set KEY=VALUE ...] [--out DIR]
    ray job submit --working-dir . -- python ray_jobs/transfer.py --config configs/demo.yaml \
        --set out_dir=/mnt/shared/runs/demo --set data.root=/mnt/shared/data --set storage=s3://bucket/crossadapt
"""

from _job import run  # ray_jobs/ is sys.path[0] when a script here runs

if __name__ == "__main__":
    run("transfer")
