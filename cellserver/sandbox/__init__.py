"""The kernel sandbox (issue 3): settings and plan (``settings``, pure), and
the confinement applied in each forked kernel (``apply``)."""
