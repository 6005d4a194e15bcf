"""The template cache's archive checks, without PostgreSQL: what is refused, and with which one line."""

from __future__ import annotations

import dataclasses
import io
import stat
import tarfile
from pathlib import Path

import pytest

from pytest_nocrud.pg.cache import (
    CACHE_FORMAT_VERSION,
    DUMP_FILES,
    LAYERS,
    CacheRefused,
    Manifest,
    archive_name,
    check_manifest,
    copy_archive,
    make_private_dirs,
    manifests,
    portable_note,
    read_archive,
    read_layer,
    sha256_of,
    verified,
    write_archive,
)
from pytest_nocrud.pg.key import TEMPLATE_FORMAT_VERSION

KEY, SCHEMA_KEY = "a" * 64, "b" * 64
WANTED = {"key": KEY, "schema_key": SCHEMA_KEY, "pg_major": 15}


def manifest(**changes: object) -> Manifest:
    base = Manifest(
        key=KEY,
        schema_key=SCHEMA_KEY,
        pg_major=15,
        template_format=TEMPLATE_FORMAT_VERSION,
        sha256={name: "0" * 64 for name in DUMP_FILES.values()},
        notes={layer: {} for layer in LAYERS},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def refusal(value: Manifest) -> str:
    with pytest.raises(CacheRefused) as caught:
        check_manifest(value, **WANTED)  # type: ignore[arg-type]
    text = str(caught.value)
    assert "\n" not in text
    return text


def test_a_matching_manifest_passes_and_survives_json() -> None:
    value = manifest(notes={"schema": {"lineage": "x", "files": {"a.sql": "1" * 64}}, "template": {}})
    assert Manifest.from_json(value.to_json()) == value
    check_manifest(value, **WANTED)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"key": "c" * 64}, "key mismatch (it holds template key cccccccccccc, this run needs aaaaaaaaaaaa)"),
        ({"schema_key": "c" * 64}, "schema key mismatch"),
        ({"pg_major": 14}, "made by PostgreSQL 14, this server is PostgreSQL 15"),
        ({"template_format": TEMPLATE_FORMAT_VERSION - 1}, "template format version"),
        ({"cache_format": CACHE_FORMAT_VERSION + 1}, "cache format"),
        ({"sha256": {"schema.dump": "0" * 64}}, "manifest lists"),
        ({"sha256": {name: "0" for name in DUMP_FILES.values()}}, "malformed sha256"),
    ],
)
def test_a_manifest_for_anything_else_is_refused_in_one_line(changes: dict[str, object], reason: str) -> None:
    assert reason in refusal(manifest(**changes))


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"key": "x"}', '{"key": 1, "schema_key": "b", "pg_major": 15, "template_format": 4, '
     '"cache_format": 1, "sha256": {}, "notes": {}}'],
)  # fmt: skip
def test_a_malformed_manifest_is_refused(text: str) -> None:
    with pytest.raises(CacheRefused, match="manifest"):
        Manifest.from_json(text)


def test_portable_note_drops_this_servers_history() -> None:
    note = {"lineage": "l", "files": {}, "run": "r", "used_at": 1.0, "built_at": 2.0, "how": "built in 1s"}
    assert portable_note(note) == {"lineage": "l", "files": {}}


# -- archives on disk ---------------------------------------------------------------------------------


def write(tmp_path: Path, contents: dict[str, bytes] | None = None) -> Path:
    contents = contents or {"schema": b"schema dump bytes" * 1000, "template": b"template dump bytes" * 1000}
    dumps = {}
    for layer, data in contents.items():
        dumps[layer] = tmp_path / f"src-{layer}"
        dumps[layer].write_bytes(data)
    sums = {DUMP_FILES[layer]: sha256_of(path) for layer, path in dumps.items()}
    archive = make_private_dirs(tmp_path / "cache" / "deeper") / archive_name(KEY)
    write_archive(archive, manifest(sha256=sums), dumps)
    return archive


def read(archive: Path, tmp_path: Path) -> str:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    with pytest.raises(CacheRefused) as caught:
        read_archive(archive, work, **WANTED)  # type: ignore[arg-type]
    return str(caught.value)


def test_an_archive_round_trips_private_and_leaves_no_temp_file(tmp_path: Path) -> None:
    archive = write(tmp_path)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700
    assert stat.S_IMODE(archive.parent.stat().st_mode) == 0o700
    assert [p.name for p in archive.parent.iterdir()] == [archive.name]
    work = tmp_path / "work"
    work.mkdir()
    found, dumps = read_archive(archive, work, **WANTED)  # type: ignore[arg-type]
    assert found.key == KEY
    assert dumps["template"].read_bytes() == b"template dump bytes" * 1000
    assert verified(archive, **WANTED)  # type: ignore[arg-type]
    assert not verified(archive, key="c" * 64, schema_key=SCHEMA_KEY, pg_major=15)


def test_a_flipped_byte_is_a_checksum_mismatch(tmp_path: Path) -> None:
    archive = write(tmp_path)
    with tarfile.open(archive) as tar:
        member = tar.getmember(DUMP_FILES["schema"])
        at = member.offset_data + member.size // 2
    data = bytearray(archive.read_bytes())
    data[at] ^= 0x01
    archive.write_bytes(bytes(data))
    assert read(archive, tmp_path) == "checksum mismatch (schema.dump)"
    assert not verified(archive, **WANTED)  # type: ignore[arg-type]


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.01])
def test_a_truncated_archive_is_refused(tmp_path: Path, keep: float) -> None:
    archive = write(tmp_path)
    archive.write_bytes(archive.read_bytes()[: int(archive.stat().st_size * keep)])
    assert read(archive, tmp_path).startswith(("truncated or corrupt archive", "checksum mismatch"))


def test_not_an_archive_or_one_without_its_files_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / archive_name(KEY)
    archive.write_bytes(b"\x00garbage" * 500)
    assert read(archive, tmp_path).startswith("truncated or corrupt archive")
    with tarfile.open(archive, "w") as tar:
        data = manifest().to_json().encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert read(archive, tmp_path) == "truncated or corrupt archive (schema.dump missing)"


def test_one_layer_is_extracted_alone_and_checked(tmp_path: Path) -> None:
    archive = write(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    found, dumps = read_archive(archive, work, layers=("template",), **WANTED)  # type: ignore[arg-type]
    assert list(dumps) == ["template"] and sorted(p.name for p in work.iterdir()) == ["template.dump"]
    schema = read_layer(archive, work, found, "schema")
    assert schema.read_bytes() == b"schema dump bytes" * 1000
    with pytest.raises(CacheRefused, match="it changed while it was read"):
        read_layer(archive, work, dataclasses.replace(found, key="d" * 64), "schema")


def test_the_scan_for_schema_layers_passes_over_what_it_cannot_use(tmp_path: Path) -> None:
    archive = write(tmp_path)
    directory = archive.parent
    (directory / archive_name("e" * 64)).write_bytes(b"not a tar at all")
    other_major = directory / archive_name("f" * 64)
    write_archive(other_major, manifest(pg_major=14), {layer: archive for layer in LAYERS})
    (directory / "unrelated.tar").write_bytes(archive.read_bytes())
    assert [(path, found.key) for path, found in manifests(directory, pg_major=15)] == [(archive, KEY)]
    assert list(manifests(directory, pg_major=16)) == []


def test_a_copied_archive_is_whole_private_and_verified(tmp_path: Path) -> None:
    archive = write(tmp_path)
    target = make_private_dirs(tmp_path / "elsewhere") / archive.name
    copy_archive(archive, target)
    assert target.read_bytes() == archive.read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    assert verified(target, **WANTED)  # type: ignore[arg-type]
