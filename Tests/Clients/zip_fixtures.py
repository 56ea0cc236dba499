"""Zip files for the zip import tests (Tests/Clients/zip_import_e2e.py) and bench/zip-import.sh:
good ones in fal's flat naming and in folders, and bad ones (bombs, path traversal, a symbolic
link, truncated or corrupt, duplicate names, non-images). Standard library only (zipfile, struct, zlib).

Each writer takes the path of the zip to write and returns a dict describing it: `path`, and for good
zips `samples`, `controls` and `captions` (what the dataset must hold afterwards), for bad ones `code`
(the refusal the server must answer, or a tuple of acceptable ones) and `entry` (the offending name,
which the refusal's message should name).

Bad zips put good entries before (and after) the bad one, so a server that places entries while it
reads them has something to clean up: "nothing partial stays" is then a real check.

Run directly (`python zip_fixtures.py DIR`) to write every fixture into DIR for a look with `unzip -l`.
"""
import os
import stat
import struct
import sys
import time
import warnings
import zipfile
import zlib

from support import png

MiB = 1 << 20
GiB = 1 << 30
SYMLINK_ATTR = (stat.S_IFLNK | 0o777) << 16
REGULAR_ATTR = (stat.S_IFREG | 0o644) << 16


def jpeg(width, height, filler=2048):
    """A JPEG as far as a header reader can tell: SOI, a baseline frame header with the size, filler."""
    frame = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(frame) + 2) + frame + os.urandom(filler)


def caption(stem):
    return f"turn {stem} into a watercolour painting"


def _info(name, attr=REGULAR_ATTR, method=zipfile.ZIP_DEFLATED):
    info = zipfile.ZipInfo(name, date_time=(2026, 11, 30, 12, 0, 0))
    info.compress_type = method
    info.create_system = 3  # Unix, so external_attr's high 16 bits are a mode
    info.external_attr = attr
    return info


def _put(archive, name, data, method=zipfile.ZIP_DEFLATED, attr=REGULAR_ATTR):
    archive.writestr(_info(name, attr, method), data)


def _good_pair(archive, prefix, stem, size=(640, 480), filler=2048):
    """One complete sample in folders: control/, target/ and its caption."""
    _put(archive, f"{prefix}control/{stem}.png", png(*size, filler), zipfile.ZIP_STORED)
    _put(archive, f"{prefix}target/{stem}.png", png(*size, filler), zipfile.ZIP_STORED)
    _put(archive, f"{prefix}target/{stem}.txt", caption(stem))


# MARK: Good zips


def fal_zip(path, samples=6, second_control="all", top=None, filler=2048):
    """fal's flat naming: `X_start.png`, `X_end.png`, `X.txt`, and `X_start2.png` for every sample
    (second_control="all"), every other one ("some") or none ("none"). `top` wraps everything in
    one folder, as zipping a folder does. Samples may differ in their number of controls."""
    prefix = f"{top}/" if top else ""
    stems = [f"fal sample {index:03d}" for index in range(samples)]
    with zipfile.ZipFile(path, "w") as archive:
        for index, stem in enumerate(stems):
            _put(archive, f"{prefix}{stem}_start.png", png(768, 512, filler), zipfile.ZIP_STORED)
            if second_control == "all" or (second_control == "some" and index % 2 == 0):
                _put(archive, f"{prefix}{stem}_start2.png", png(768, 512, filler), zipfile.ZIP_STORED)
            _put(archive, f"{prefix}{stem}_end.png", png(768, 512, filler), zipfile.ZIP_STORED)
            _put(archive, f"{prefix}{stem}.txt", caption(stem))
    second = sum(1 for index in range(samples) if second_control == "all" or (second_control == "some" and index % 2 == 0))
    mix = {count: samples for count, samples in ((1, samples - second), (2, second)) if samples}
    return {"path": path, "samples": stems, "control_mix": mix, "captions": {stem: caption(stem) for stem in stems}}


def folder_zip(path, samples=5, top="mydata", filler=2048, method=zipfile.ZIP_STORED):
    """Our folder layout inside one wrapping folder (`mydata/control/…`), as macOS's "Compress"
    makes it: `control/` (PNG), `control_2/` (JPEG, upper-case extension), `target/` with captions,
    directory entries, and `__MACOSX/` resource forks plus `.DS_Store` litter that is ignored."""
    prefix = f"{top}/" if top else ""
    stems = [f"pair{index:03d}" for index in range(samples)]
    with zipfile.ZipFile(path, "w") as archive:
        for folder in ("", "control/", "control_2/", "target/"):
            if prefix or folder:
                archive.writestr(_info(prefix + folder, (stat.S_IFDIR | 0o755) << 16 | 0x10, zipfile.ZIP_STORED), b"")
        for stem in stems:
            _put(archive, f"{prefix}control/{stem}.png", png(640, 640, filler), method)
            _put(archive, f"{prefix}control_2/{stem}.JPG", jpeg(640, 640, filler), method)
            _put(archive, f"{prefix}target/{stem}.png", png(640, 640, filler), method)
            _put(archive, f"{prefix}target/{stem}.txt", caption(stem))
        _put(archive, f"{prefix}.DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(64))
        _put(archive, f"{prefix}target/.DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(64))
        for stem in stems[:2]:
            _put(archive, f"__MACOSX/{prefix}control/._{stem}.png", b"\x00\x05\x16\x07" + bytes(80))
        _put(archive, f"__MACOSX/{prefix}._target", b"\x00\x05\x16\x07" + bytes(80))
    return {"path": path, "samples": stems, "control_mix": {2: samples}, "captions": {stem: caption(stem) for stem in stems},
            "ignored_at_least": 2 + 3}


def pairs_zip(path, samples, filler=2048, top=None):
    """`samples` plain pairs (control/, target/, captions), stored: the bench's and the progress test's zip."""
    prefix = f"{top}/" if top else ""
    stems = [f"{index:04d}" for index in range(samples)]
    with zipfile.ZipFile(path, "w") as archive:
        for stem in stems:
            _good_pair(archive, prefix, stem, filler=filler)
    return {"path": path, "samples": stems, "control_mix": {1: samples}, "captions": {stem: caption(stem) for stem in stems}}


# MARK: Raw zips (sizes and attributes that zipfile would not write)


def _dos_time():
    t = time.localtime(time.mktime((2026, 11, 30, 12, 0, 0, 0, 0, -1)))
    return (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2), ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday


def _write_raw(path, entries):
    """A zip written field by field. Each entry: name, method (0 or 8), crc, compressed size,
    uncompressed size, data (bytes or an iterable of bytes chunks), and optionally
    `local_size` (the uncompressed size the local header claims; defaults to the central one)."""
    dos_time, dos_date = _dos_time()
    central = b""
    with open(path, "wb") as out:
        for entry in entries:
            name = entry["name"].encode()
            offset = out.tell()
            local_size = entry.get("local_size", entry["usize"])
            out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x800, entry["method"], dos_time, dos_date,
                                  entry["crc"], entry["csize"], local_size, len(name), 0) + name)
            data = entry["data"]
            for chunk in ([data] if isinstance(data, bytes) else data):
                out.write(chunk)
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | 20, 20, 0x800, entry["method"], dos_time, dos_date,
                                   entry["crc"], entry["csize"], entry["usize"], len(name), 0, 0, 0, 0,
                                   entry.get("attr", REGULAR_ATTR), offset) + name
        start = out.tell()
        out.write(central)
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), start, 0))


def _stored(name, data, attr=REGULAR_ATTR):
    return {"name": name, "method": 0, "crc": zlib.crc32(data), "csize": len(data), "usize": len(data), "data": data, "attr": attr}


def _good_raw_pair(stem, prefix=""):
    return [_stored(f"{prefix}control/{stem}.png", png(640, 480)), _stored(f"{prefix}target/{stem}.png", png(640, 480)),
            _stored(f"{prefix}target/{stem}.txt", caption(stem).encode())]


def _zeros_deflated(total, chunk=MiB):
    """A raw deflate stream of `total` zero bytes (a multiple of `chunk`) and its CRC-32, made
    without holding or deflating them all: one chunk deflated after a full flush (which resets the
    compressor's history) gives the same bytes every time, so the stream is that block repeated,
    then an empty final block. Each chunk inflates to `chunk` zeros."""
    assert total % chunk == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert block == again, "a full flush did not reset the compressor"
    count = total // chunk
    final = b"\x03\x00"  # an empty final block with fixed codes
    crc, zeros = 0, bytes(chunk)
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    return block, count, final, crc


def bomb_zip(path, size=2 * GiB, name="target/bomb.png", lie=False):
    """A zip bomb: `size` zero bytes deflated to about size/1000 (2 GiB in ~2 MB), after a good
    pair, written in a second or two without ever holding the zeros. With `lie`, the headers claim
    the entry is 64 KiB (an innocent ratio), and the deflate stream still inflates to `size`: a
    reader must stop at the size it was told (CRC and size checks), not trust the stream."""
    block, count, final, crc = _zeros_deflated(size)
    csize = len(block) * count + len(final)
    entries = _good_raw_pair("before")
    entries.append({"name": name, "method": 8, "crc": crc, "csize": csize, "usize": (64 << 10) if lie else size,
                    "data": (block for _ in range(count)), "attr": REGULAR_ATTR})
    entries[-1]["data"] = _chain(entries[-1]["data"], [final])
    _write_raw(path, entries)
    return {"path": path, "code": ("zip_bomb", "unreadable_zip") if lie else "zip_bomb", "entry": name, "compressed": csize, "uncompressed": size}


def _chain(*iterables):
    for iterable in iterables:
        yield from iterable


def big_total_zip(path, total=320 * MiB, parts=5):
    """Uncompressed total over a (lowered) dataset limit with no entry looking like a bomb: `parts`
    PNG-headed targets that deflate about 36:1 (4 random bytes in every 256, the rest zeros: far
    below a bomb's ratio). Written in a second: each entry is a header block and one 1 MiB block
    deflated after a full flush, repeated (as in `_zeros_deflated`)."""
    each = total // parts
    assert each % MiB == 0
    pattern = bytearray(MiB)
    for offset in range(0, MiB, 256):
        pattern[offset:offset + 4] = os.urandom(4)
    pattern = bytes(pattern)
    entries = []
    for index in range(parts):
        header = png(1024, 1024, 0)
        first = header + pattern[len(header):]
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        head_block = compressor.compress(first) + compressor.flush(zlib.Z_FULL_FLUSH)
        block = compressor.compress(pattern) + compressor.flush(zlib.Z_FULL_FLUSH)
        count = each // MiB - 1
        crc = zlib.crc32(first)
        for _ in range(count):
            crc = zlib.crc32(pattern, crc)
        final = b"\x03\x00"
        entries.append({"name": f"target/heavy{index}.png", "method": 8, "crc": crc, "usize": each,
                        "csize": len(head_block) + len(block) * count + len(final),
                        "data": _chain([head_block], (block for _ in range(count)), [final])})
    _write_raw(path, entries)
    return {"path": path, "code": "too_large", "entry": None, "uncompressed": total}


# MARK: Bad zips


def traversal_zip(path, name="../evil.png"):
    """An entry whose name leaves the dataset: `../evil.png`, `/etc/x.png`, `a/../../evil.png`.
    zipfile keeps names given as ZipInfo (it only sanitises them when extracting)."""
    with zipfile.ZipFile(path, "w") as archive:
        _good_pair(archive, "", "before")
        _put(archive, name, png(640, 480), zipfile.ZIP_STORED)
        _good_pair(archive, "", "after")
    return {"path": path, "code": "path_traversal", "entry": name}


def symlink_zip(path, name="target/link.png", target="/etc/passwd"):
    """An entry that is a symbolic link (Unix mode S_IFLNK in external_attr, content = where it points)."""
    with zipfile.ZipFile(path, "w") as archive:
        _good_pair(archive, "", "before")
        _put(archive, name, target.encode(), zipfile.ZIP_STORED, attr=SYMLINK_ATTR)
        _good_pair(archive, "", "after")
    return {"path": path, "code": "symlink", "entry": name}


def truncated_zip(path, keep=0.5):
    """A good folder zip cut after `keep` of its bytes: no central directory left."""
    full = path + ".full"
    folder_zip(full, samples=6)
    data = open(full, "rb").read()
    os.remove(full)
    with open(path, "wb") as out:
        out.write(data[: int(len(data) * keep)])
    return {"path": path, "code": "unreadable_zip", "entry": None}


def corrupt_zip(path):
    """A complete zip whose stored target image has one byte changed: its CRC-32 does not match."""
    entries = _good_raw_pair("before")
    bad = _stored("target/corrupt.png", png(640, 480))
    data = bytearray(bad["data"])
    data[len(data) // 2] ^= 0xFF
    bad["data"] = bytes(data)  # the CRC stays that of the original bytes
    entries += [_stored("control/corrupt.png", png(640, 480)), bad, _stored("target/corrupt.txt", b"a caption")]
    _write_raw(path, entries)
    return {"path": path, "code": "unreadable_zip", "entry": "target/corrupt.png"}


def duplicate_zip(path, variant="same"):
    """Two entries for one dataset file: the same name twice ("same"), `a.png` and `a.PNG` ("case",
    both `target/a.png`), or `a.png` and `a.jpg` as target ("extension", the same sample twice)."""
    second = {"same": "target/a.png", "case": "target/a.PNG", "extension": "target/a.jpg"}[variant]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names; that is the point
        with zipfile.ZipFile(path, "w") as archive:
            _good_pair(archive, "", "before")
            _put(archive, "control/a.png", png(640, 480), zipfile.ZIP_STORED)
            _put(archive, "target/a.png", png(640, 480), zipfile.ZIP_STORED)
            _put(archive, "target/a.txt", caption("a"))
            _put(archive, second, jpeg(640, 480) if second.endswith(".jpg") else png(640, 480), zipfile.ZIP_STORED)
    return {"path": path, "code": "duplicate_name", "entry": second}


def not_image_zip(path, variant="text"):
    """A non-image: `target/x.png` that holds text ("text", not_an_image), or `target/x.exe`
    ("exe": not an image either, and a file type the layout refuses)."""
    name, data = {"text": ("target/x.png", b"this is not a picture, just text\n" * 20),
                  "exe": ("target/x.exe", b"MZ\x90\x00" + bytes(200))}[variant]
    with zipfile.ZipFile(path, "w") as archive:
        _good_pair(archive, "", "before")
        _put(archive, "control/x.png", png(640, 480), zipfile.ZIP_STORED)
        _put(archive, name, data)
        _put(archive, "target/x.txt", caption("x"))
        _good_pair(archive, "", "after")
    return {"path": path, "code": "not_an_image" if variant == "text" else ("not_an_image", "layout"), "entry": name}


def layout_zip(path, name="notes/readme.png"):
    """An image in no role folder and without fal's naming: the layout refuses its path."""
    with zipfile.ZipFile(path, "w") as archive:
        _good_pair(archive, "", "before")
        _put(archive, name, png(640, 480), zipfile.ZIP_STORED)
    return {"path": path, "code": "layout", "entry": name}


def empty_zip(path):
    """Only folders and system litter: nothing for the dataset."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(_info("export/", (stat.S_IFDIR | 0o755) << 16 | 0x10, zipfile.ZIP_STORED), b"")
        _put(archive, "export/.DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(64))
        _put(archive, "__MACOSX/export/._.DS_Store", b"\x00\x05\x16\x07" + bytes(80))
    return {"path": path, "code": "empty", "entry": None}


def all_fixtures(folder):
    """Every fixture, written into `folder`: name → description."""
    os.makedirs(folder, exist_ok=True)
    p = lambda name: os.path.join(folder, name)  # noqa: E731
    return {
        "fal": fal_zip(p("fal.zip")),
        "fal-wrapped-some": fal_zip(p("fal-some.zip"), second_control="some", top="fal export"),
        "folder": folder_zip(p("folder.zip")),
        "bomb": bomb_zip(p("bomb.zip")),
        "bomb-ratio": bomb_zip(p("bomb-ratio.zip"), size=32 * MiB),
        "bomb-lying": bomb_zip(p("bomb-lying.zip"), size=1 * GiB, lie=True),
        "bomb-total": big_total_zip(p("bomb-total.zip")),
        "traversal": traversal_zip(p("traversal.zip")),
        "traversal-absolute": traversal_zip(p("traversal-absolute.zip"), "/etc/x.png"),
        "traversal-nested": traversal_zip(p("traversal-nested.zip"), "mydata/target/../../../evil.png"),
        "symlink": symlink_zip(p("symlink.zip")),
        "truncated": truncated_zip(p("truncated.zip")),
        "corrupt": corrupt_zip(p("corrupt.zip")),
        "duplicate-same": duplicate_zip(p("duplicate-same.zip"), "same"),
        "duplicate-case": duplicate_zip(p("duplicate-case.zip"), "case"),
        "duplicate-extension": duplicate_zip(p("duplicate-extension.zip"), "extension"),
        "not-image": not_image_zip(p("not-image.zip"), "text"),
        "not-image-exe": not_image_zip(p("not-image-exe.zip"), "exe"),
        "layout": layout_zip(p("layout.zip")),
        "empty": empty_zip(p("empty.zip")),
    }


if __name__ == "__main__":
    for key, fixture in all_fixtures(sys.argv[1] if len(sys.argv) > 1 else "zip-fixtures").items():
        print(f"{key:22} {os.path.getsize(fixture['path']):>12,} bytes  {fixture['path']}")
