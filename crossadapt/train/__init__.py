"""Training: ``engine`` (pure torch loop pieces) and ``ray_train`` (Ray Train per-worker loop and driver)."""
