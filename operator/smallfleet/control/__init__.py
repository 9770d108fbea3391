"""The control layer: the operator's runtime between the kopf handlers and the I/O adapters.

It gathers facts (from what kopf watches), asks the pure core for a plan,
executes it through `smallfleet.kube` and writes each object's status in one
place. It never imports kopf: the handlers above it own the event loop.
"""
