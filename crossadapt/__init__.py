"""CrossAdapt: cross-architecture knowledge transfer for CTR models on Ray.

Layers (lower never import higher):
1. pure math and models, no Ray: ``featuremap``, ``metrics``, ``losses``, ``models``,
   ``projection.math``, ``online.drift``, ``online.reservoir``, ``data.synthetic``, ``data.converters``;
2. Ray glue: ``data.ray_data``, ``train``, ``projection.actors``, ``online.actors``, ``tune``;
3. jobs and CLI: ``cli`` and ``ray_jobs/``.
"""

__version__ = "0.1.0"
