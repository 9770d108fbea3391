"""The pure core: values in, values out.

Every module in this package parses, renders, plans, decides or derives from
the values it is given. None imports kopf, the Kubernetes client, a network
library, the I/O adapters or the handlers; import-linter checks the package as
a whole, so a module added here is held to the same rule without being listed.
"""
