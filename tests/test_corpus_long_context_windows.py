"""The training window of a long-context document (`function_window`, `crop_to_functions`) against
hand-cut expectations."""

import pytest
from datasets import Dataset

from mambacode.corpus import crop_to_functions, function_window

DOC = ("class Reader(io.RawIOBase):\n"
       "    def __init__(self, sock):\n"
       "        self.sock = sock\n"
       "\n"
       "    def readinto_buffer(self, b):\n"
       "        return 0\n"
       "\n"
       "    async def read(self, n=-1):\n"
       "        ...\n"
       "\n"
       "    def readinto(self, b):\n"
       "        return self.readinto_buffer(b)\n")


def test_function_window_starts_at_the_queried_def_after_the_header():
    assert function_window(DOC, "Reader.readinto") == ("class Reader(io.RawIOBase):\n"
                                                       "    def readinto(self, b):\n"
                                                       "        return self.readinto_buffer(b)\n")
    # `read` must not match `readinto_buffer` (a word boundary), and `async def` counts
    assert function_window(DOC, "Reader.read") == ("class Reader(io.RawIOBase):\n"
                                                   "    async def read(self, n=-1):\n"
                                                   "        ...\n"
                                                   "\n"
                                                   "    def readinto(self, b):\n"
                                                   "        return self.readinto_buffer(b)\n")
    module = "def first():\n    pass\n\ndef second():\n    pass\n"
    assert function_window(module, "first") == module  # already at the top: the document as it is
    assert function_window(module, "second") == "def first():\n" + "def second():\n    pass\n"
    assert function_window(DOC, "Reader.missing") is None
    assert function_window(DOC, "") is None
    assert function_window("x = 'def read(self):'\n", "read") is None  # not at the start of a line


def test_crop_to_functions_counts_what_it_kept():
    ds = Dataset.from_list([{"query": "a", "code": DOC, "func_name": "Reader.readinto"},
                            {"query": "b", "code": DOC, "func_name": "Reader.gone"}])
    out, counts = crop_to_functions(ds)
    assert out["code"] == [function_window(DOC, "Reader.readinto"), DOC] and out["query"] == ["a", "b"]
    assert counts == {"rows": 2, "cropped": 1, "kept": 1}
    with pytest.raises(ValueError, match="no column 'func_name'"):
        crop_to_functions(ds.remove_columns("func_name"))
