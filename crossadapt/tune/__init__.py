"""Hyper-parameter search on Ray Tune: ``space`` (pure: the search-space files), ``trials`` and
``search`` (Ray glue: the trainables and the driver)."""
