import pytest

from edgeproxy.tap import parse_cells, parse_permalinks


def test_permalink_backends_named_or_numbered():
    assert parse_permalinks("http://a:1,http://b:2") == (("p1", "http://a:1"), ("p2", "http://b:2"))
    assert parse_permalinks("x=http://a:1, y=https://b:2") == (("x", "http://a:1"), ("y", "https://b:2"))
    for bad in ("ftp://a", "x=http://a:1,x=http://b:1", "x=nope"):
        with pytest.raises(ValueError):
            parse_permalinks(bad)


def test_cells_need_valid_node_names():
    assert parse_cells("c1=http://127.0.0.1:8101") == (("c1", "http://127.0.0.1:8101"),)
    for bad in ("c1", "Bad_Name=http://x:1", "c1=http://a:1,c1=http://b:1"):
        with pytest.raises(Exception):
            parse_cells(bad)


def test_proxy_protocol_needs_trusted_peers_and_comes_from_the_file_too(tmp_path):
    from twisted.python import usage

    from edgeproxy.tap import Options

    static = ["--static-dir", str(tmp_path)]
    with pytest.raises(usage.UsageError, match="needs --trusted-proxies"):
        Options().parseOptions(["--proxy-protocol", *static])
    o = Options()
    o.parseOptions(["--proxy-protocol", "--trusted-proxies", "10.0.0.5", *static])
    assert o.proxy_protocol is True
    cfg = tmp_path / "c.toml"
    cfg.write_text('[edgeproxy]\nproxy-protocol = true\ntrusted-proxies = "10.0.0.0/8"\n')
    o = Options()
    o.parseOptions(["--config", str(cfg), *static])
    assert o.proxy_protocol is True and len(o.settings.trusted_proxies) == 1
    o = Options()
    o.parseOptions(static)
    assert o.proxy_protocol is False


def test_ssl_descriptions_take_escaped_colons_as_twisted_does():
    from edgeproxy.tls import parse_ssl_description

    assert parse_ssl_description("ssl:8443:privateKey=k.pem") == (8443, {"privateKey": "k.pem", "certKey": "k.pem"})
    port, opts = parse_ssl_description(r"ssl:8443:interface=\:\:1:privateKey=k.pem:certKey=c.pem")
    assert (port, opts["interface"], opts["certKey"]) == (8443, "::1", "c.pem")
    port, opts = parse_ssl_description(r"ssl:port=9443:interface=127.0.0.1:privateKey=C\:/k.pem")
    assert (port, opts["privateKey"]) == (9443, "C:/k.pem")
    for bad in ("tcp:80", "ssl:", "ssl:x:privateKey=k", "ssl:80", "ssl:80:81:privateKey=k"):
        with pytest.raises(ValueError):
            parse_ssl_description(bad)
