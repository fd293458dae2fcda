"""cellstack: a SageMathCell-compatible public compute-cell service on Twisted.

One distribution holds every node (edgeproxy, cellserver, permalinkd), the
shared node conventions in ``deploy``, the certificate tooling in ``certs``
and the load tools in ``loadtest``.  The twistd plugins live in
``twisted/plugins`` (a namespace: no ``__init__.py`` there), listed
explicitly so that the built wheel carries them.
"""
from setuptools import setup, find_packages

packages = find_packages(
    include=["cellserver*", "edgeproxy*", "permalinkd*", "certs*", "deploy*", "loadtest*"]
)

setup(
    name="cellstack",
    version="0.1.0",
    description="A public compute-cell service (SageMathCell-compatible) on Twisted",
    python_requires=">=3.11",
    packages=packages + ["twisted.plugins"],
    package_data={
        "twisted": ["plugins/cellserver.py", "plugins/edgeproxy.py", "plugins/permalinkd.py",
                    "plugins/cellstack_reactors.py"],
        "": ["*.toml", "*.conf", "*.tmpl", "redis/*.tmpl", "static/*", "static/**/*", "templates/*"],
    },
    include_package_data=True,
    install_requires=[
        "twisted[tls]>=24.7",
        "autobahn[twisted]>=24.4",
        "treq>=24.9",
        "txredisapi>=1.4.10",
        "hiredis>=2",  # txredisapi's fast reply parser (its pure-Python one pauses the transport per bulk item)
        "pyzmq>=26",
        "jupyter_client>=8.6",
        "ipykernel>=6.29",
        "ipywidgets>=8.1",
        "ipympl>=0.9",
        "prometheus_client>=0.20",
        "pyOpenSSL>=24",
        "cryptography>=42",
        "service_identity>=24",
        "pyseccomp>=0.1.2",
        "numpy",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout", "pytest-twisted>=1.14", "hypothesis>=6", "playwright>=1.40"],
    },
    zip_safe=False,
)
