"""Ray job: raw or synthetic logs -> encoded parquet periods + feature map (``crossadapt prepare``).

    python ray_jobs/prepare.py --config configs/demo.yaml [--set KEY=VALUE ...] [--force]
    ray job submit --working-dir . -- python ray_jobs/prepare.py --config configs/demo.yaml \
        --set data.root=/mnt/shared/data
"""

from _job import run  # ray_jobs/ is sys.path[0] when a script here runs

if __name__ == "__main__":
    run("prepare")
