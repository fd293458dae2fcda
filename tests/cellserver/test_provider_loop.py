"""The provider's command handling, without forking: bad input gets an error
event, refused starts leave no directory, unknown kills are ignored."""
from __future__ import annotations

import os

import pytest

from cellserver.provider import protocol as P
from cellserver.provider.__main__ import Provider


@pytest.fixture
def provider(tmp_path):
    r_out, w_out = os.pipe()
    p = Provider(proto_in=-1, proto_out=w_out, preload=(), ipython_dir=str(tmp_path / "ipy"))

    def events():
        os.set_blocking(r_out, False)
        try:
            data = os.read(r_out, 65536)
        except BlockingIOError:
            return []
        return [P.decode_event(line) for line in P.LineBuffer().feed(data)]
    p.events = events
    yield p
    os.close(r_out)
    os.close(w_out)


@pytest.mark.parametrize("line, why", [
    (b"{nope", "bad command: not JSON"),
    (b'{"op": "fork-bomb"}', "bad command: unknown op"),
    (b'{"op": "start", "kid": "k"}', "bad command: start: missing"),
])
def test_bad_commands_get_an_error_event(provider, line, why):
    provider.handle_line(line)
    [ev] = provider.events()
    assert isinstance(ev, P.ProviderError) and ev.message.startswith(why)
    assert not provider.quitting and not provider.kernels


def test_start_with_a_bad_key_is_refused_and_leaves_no_directory(provider, tmp_path):
    cmd = P.Start(kid="k1", key="not hex", sock_dir=str(tmp_path / "s"), work_dir=str(tmp_path / "w"))
    provider.handle_line(P.encode(cmd))
    [ev] = provider.events()
    assert isinstance(ev, P.StartFailed) and ev.kid == "k1" and "ValueError" in ev.error
    assert not (tmp_path / "s").exists() and not (tmp_path / "w").exists()


def test_start_into_an_existing_directory_is_refused(provider, tmp_path):
    (tmp_path / "s").mkdir()
    cmd = P.Start(kid="k1", key="00ff" * 16, sock_dir=str(tmp_path / "s"), work_dir=str(tmp_path / "w"))
    provider.handle_line(P.encode(cmd))
    [ev] = provider.events()
    assert isinstance(ev, P.StartFailed) and "FileExistsError" in ev.error
    assert provider.kernels == {} and (tmp_path / "s").is_dir() and not (tmp_path / "w").exists()


def test_kill_of_an_unknown_kernel_is_ignored_and_quit_stops(provider):
    provider.handle_line(P.encode(P.Kill(kid="nobody")))
    assert provider.events() == []
    provider.handle_line(P.encode(P.Quit()))
    assert provider.quitting


def test_start_with_a_short_key_is_refused(provider, tmp_path):
    cmd = P.Start(kid="k1", key="", sock_dir=str(tmp_path / "s"), work_dir=str(tmp_path / "w"))
    provider.handle_line(P.encode(cmd))
    [ev] = provider.events()
    assert isinstance(ev, P.StartFailed) and "at least 32 hex digits" in ev.error


class _Exits:
    """Stands in for the template's pipes: the exits it reported."""

    def __init__(self, exits):
        self.exits = exits

    def poll(self):
        out, self.exits = self.exits, []
        return out


def test_every_reported_exit_is_cleaned_up_after_the_cell_server_is_gone(provider, tmp_path):
    """A killed cell server: events cannot be sent any more (EPIPE), and the
    provider still removes every ended kernel's directories, then stops."""
    for pid in (101, 102):
        cmd = P.Start(kid=f"k{pid}", key="00ff" * 16, sock_dir=str(tmp_path / f"s{pid}"),
                      work_dir=str(tmp_path / f"w{pid}"))
        os.mkdir(cmd.sock_dir)
        os.mkdir(cmd.work_dir)
        provider.kernels[pid] = cmd
        provider.by_kid[cmd.kid] = pid
    r, w = os.pipe()
    os.close(r)
    provider.proto_out = w
    provider.template = _Exits([(101, 9), (102, 0)])
    try:
        provider.reap_reported()
    finally:
        os.close(w)
    assert provider.kernels == {} and provider.by_kid == {}
    assert os.listdir(tmp_path) == []
    assert provider.quitting and provider.cell_server_gone


def test_a_start_when_the_template_is_gone_leaves_no_directory(provider, tmp_path):
    """The template died: the start fails with TemplateLost (run() then ends
    the provider), and what it made for that kernel is removed first."""
    from cellserver.provider import forkserver
    cmd_r, cmd_w = os.pipe()
    rep_r, rep_w = os.pipe()
    os.close(cmd_r)
    provider.template = forkserver.TemplateClient(cmd_w, rep_r)
    try:
        cmd = P.Start(kid="k1", key="00ff" * 16, sock_dir=str(tmp_path / "s"), work_dir=str(tmp_path / "w"))
        with pytest.raises(forkserver.TemplateLost):
            provider.handle_line(P.encode(cmd))
        assert os.listdir(tmp_path) == [] and provider.kernels == {}
    finally:
        provider.template.close()
        os.close(rep_w)
