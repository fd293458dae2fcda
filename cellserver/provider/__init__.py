"""The kernel provider: a warm template process that forks kernels.

Spawned by the cell server (``cellserver.pool.KernelPoolService``) as
``python -m cellserver.provider`` on the kernels' interpreter, it imports
IPython/ipykernel and the preload list once (``kernelapp.warm_template``),
then forks one child per ``start`` command.  The child confines itself
(``confine.confine``: the sandbox hook) and runs an ipykernel bound to ipc
sockets in its own directory (``layout``).  The provider reaps children and
reports each exit; the pipe protocol is ``protocol``.
"""
