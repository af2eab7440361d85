"""``nodelimits audit``: judge what the cluster already holds, as ``check`` judges files.

- :mod:`webhook.audit.cluster`: discovery and paged lists through the ``kubernetes`` client
- :mod:`webhook.audit.scan`: one audit, each object through :func:`webhook.review.review`
- :mod:`webhook.audit.reports`: table/JSON/YAML and the reports of either API
  (wgpolicyk8s.io/v1alpha2 PolicyReports, openreports.io/v1alpha1 Reports)
"""
