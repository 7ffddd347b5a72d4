"""Ray job: hyper-parameter search on Ray Tune with ASHA (``crossadapt tune``).

    python ray_jobs/tune.py --config configs/demo.yaml --space tune_spaces/offline.yaml
    ray job submit --working-dir . -- python ray_jobs/tune.py --config configs/demo.yaml \
        --space tune_spaces/online.yaml --set out_dir=/mnt/shared/runs/demo --set data.root=/mnt/shared/data --set storage=s3://bucket/crossadapt
"""

from _job import run  # ray_jobs/ is sys.path[0] when a script here runs

if __name__ == "__main__":
    run("tune")
