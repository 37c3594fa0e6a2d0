"""On-demand generation over HTTP: `farm serve`, a Ray Serve application over registered models.

One deployment per model (`farm.serve.replica.ModelServer`) batches concurrent requests with
Serve's dynamic batching; a FastAPI ingress (`farm.serve.app`) routes, checks and encodes. See
docs/serving.md.
"""

from __future__ import annotations

from farm.serve.app import ServeOptions, start

__all__ = ["ServeOptions", "start"]
