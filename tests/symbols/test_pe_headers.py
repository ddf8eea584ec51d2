"""Header bytes from a crashed machine: a non-PE page, a truncated header and a directory table too short
for the entry asked for end in a SymbolError or "no directory", never in pefile's own exceptions."""

import pytest

from pytriage.errors import SymbolError
from pytriage.scenarios.pe_image import build_pe_image
from pytriage.symbols.pe_headers import data_directory, open_image_file

GUID = "1C19FDDB27BB3399D9B45973EFEAFCF3"


def _image():
    return build_pe_image("x.sys", 0xFFFFF80475000000, 0x60D5A1B2, b"\xc3", [], GUID, 1).data


def test_real_header_gives_the_debug_directory_pefile_sees():
    import pefile
    data = _image()
    pe = pefile.PE(data=data)
    expected = pe.OPTIONAL_HEADER.DATA_DIRECTORY[6]
    assert data_directory(data[:0x1000], "IMAGE_DIRECTORY_ENTRY_DEBUG", "x") == \
        (expected.VirtualAddress, expected.Size) != (0, 0)


def test_short_directory_table_is_no_directory():
    data = bytearray(_image()[:0x1000])
    e_lfanew = int.from_bytes(data[0x3C:0x40], "little")
    number_of_rva_and_sizes = e_lfanew + 24 + 108          # PE32+ optional header field
    data[number_of_rva_and_sizes:number_of_rva_and_sizes + 4] = (2).to_bytes(4, "little")
    assert data_directory(bytes(data), "IMAGE_DIRECTORY_ENTRY_DEBUG", "x") == (0, 0)


@pytest.mark.parametrize("headers", [b"\0" * 0x1000, b"MZ" + b"\xff" * 0xFFE, b"MZ" + b"\0" * 0x3A + b"\x40\0\0\0"])
def test_garbage_headers_are_one_symbol_error(headers):
    with pytest.raises(SymbolError, match="^image at 1000: not a PE image"):
        data_directory(headers, "IMAGE_DIRECTORY_ENTRY_EXPORT", "image at 1000")


def test_unreadable_image_file(tmp_path):
    bad = tmp_path / "bad.sys"
    bad.write_bytes(b"MZ" + b"\x90" * 100)
    with pytest.raises(SymbolError, match="bad.sys: not a readable PE image"):
        open_image_file(str(bad), "IMAGE_DIRECTORY_ENTRY_DEBUG")
