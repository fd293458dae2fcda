import json
import os

from deploy.jsonlines import JsonLinesFile, MemoryLines


def test_one_record_per_line_appended(tmp_path):
    path = tmp_path / "sub" / "log.jsonl"
    log = JsonLinesFile(str(path))
    log.write({"kind": "execute", "code": "print('a')\nprint('b')"})
    log.close()
    log = JsonLinesFile(str(path))  # reopening appends
    log.write({"kind": "service", "code": "1+1", "n": 2})
    log.close()
    lines = path.read_text().splitlines()
    assert [json.loads(x)["kind"] for x in lines] == ["execute", "service"]
    assert json.loads(lines[0])["code"] == "print('a')\nprint('b')"
    assert oct(os.stat(path).st_mode & 0o777) == "0o640"


def test_memory_twin_round_trips():
    m = MemoryLines()
    m.write({"a": b"x".decode(), "t": 1.5})
    assert m.records == [{"a": "x", "t": 1.5}]
