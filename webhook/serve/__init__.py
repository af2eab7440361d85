"""``nodelimits serve``: the admission handlers, the kopf glue, the TLS listener, the process."""
