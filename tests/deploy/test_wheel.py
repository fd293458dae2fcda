"""The built wheel carries what an installed node needs: the twistd plugin
files (``twisted/plugins`` is a namespace, easy to lose), the page's assets
and the deployment templates."""
import subprocess
import sys
import zipfile

from tests.support.procs import ROOT


def test_wheel_holds_the_plugins_and_the_assets(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("cellstack-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for plugin in ("cellserver", "edgeproxy", "permalinkd"):
        assert f"twisted/plugins/{plugin}.py" in names
    assert "twisted/plugins/__init__.py" not in names          # a namespace: no __init__ there
    for asset in ("cellserver/static/embedded_sagecell.js", "cellserver/static/cell.css",
                  "cellserver/static/build/widgets.js", "deploy/cluster.toml", "deploy/redis/redis.conf.tmpl"):
        assert asset in names, asset
