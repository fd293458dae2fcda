"""The output collector and the capture context (pure, in-process)."""
import sys

from IPython.core.interactiveshell import InteractiveShell
from IPython.display import HTML, clear_output, display, update_display

from cellserver.interacts.capture import OutputCollector, capturing


def test_streams_merge_in_order_with_displays_between():
    c = OutputCollector()
    c.stream("stdout", "a")
    c.stream("stdout", "b\n")
    c.stream("stderr", "oops\n")
    c.display({"text/plain": "D"})
    c.stream("stdout", "c\n")
    c.stream("stdout", "")
    assert [o["output_type"] for o in c.result()] == ["stream", "stream", "display_data", "stream"]
    assert c.result()[0]["text"] == "ab\n" and c.result()[3]["text"] == "c\n"


def test_clear_and_clear_wait():
    c = OutputCollector()
    c.stream("stdout", "old\n")
    c.clear(wait=True)
    assert len(c.result()) == 1          # kept until the next output
    c.stream("stdout", "new\n")
    assert c.result() == ({"output_type": "stream", "name": "stdout", "text": "new\n"},)
    c.clear()
    assert c.result() == ()


def test_capturing_routes_print_display_and_restores():
    shell = InteractiveShell.instance()
    out, err, pub = sys.stdout, sys.stderr, shell.display_pub
    c = OutputCollector()
    with capturing(c, shell):
        print("hi")
        print("warn", file=sys.stderr)
        display(HTML("<i>x</i>"), display_id="d1")
        update_display(HTML("<i>y</i>"), display_id="d1")
        clear_output(wait=True)
        print("after clear")
    assert (sys.stdout, sys.stderr, shell.display_pub) == (out, err, pub)
    assert c.result() == ({"output_type": "stream", "name": "stdout", "text": "after clear\n"},)


def test_display_update_replaces_by_id_and_private_keys_are_dropped():
    c = OutputCollector()
    c.display({"text/plain": "1"}, transient={"display_id": "z"})
    c.display({"text/plain": "2"}, transient={"display_id": "z"}, update=True)
    assert c.result() == ({"output_type": "display_data", "data": {"text/plain": "2"}, "metadata": {}},)


def test_error_without_shell_uses_plain_traceback():
    c = OutputCollector()
    try:
        raise ValueError("bad")
    except ValueError:
        c.error(*sys.exc_info())
    err = c.result()[0]
    assert err["ename"] == "ValueError" and err["evalue"] == "bad" and "ValueError: bad" in err["traceback"][-1]
