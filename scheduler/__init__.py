"""The memos scheduler: placement and residency policies, the background task queue and the Ray cluster
runtime (kernel actors, router, migration, recovery). Only this package imports ``ray``; the core reaches
it through the ``memos`` entry-point group like any plugin."""
