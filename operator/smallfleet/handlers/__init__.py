"""The operator's I/O shell: kopf handlers, the reconcile they call, and `smallfleet run`.

Importing this package imports nothing heavy; `handlers.operator` registers
the kopf handlers and `handlers.main` runs them.
"""
