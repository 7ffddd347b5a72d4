"""Ray job: train the config's teacher on the history periods and test it (``crossadapt train``).

    python ray_jobs/train_teacher.py --config configs/demo.yaml [--set KEY=VALUE ...] [--out DIR]
    ray job submit --working-dir . -- python ray_jobs/train_teacher.py --config configs/demo.yaml \
        --set out_dir=/mnt/shared/runs/demo --set data.root=/mnt/shared/data
"""

from _job import run  # ray_jobs/ is sys.path[0] when a script here runs

if __name__ == "__main__":
    run("train")
