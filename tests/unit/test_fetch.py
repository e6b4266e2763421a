from __future__ import annotations

from pathlib import Path

import pytest

from mlbox.catalog import Variant
from mlbox.errors import FetchError
from mlbox.fetch import model_cache_path, obtain_model
from tests.conftest import FileServer, md5_of


def served_variant(server: FileServer, path: Path, *, md5: str | None = None) -> Variant:
    target = server.root / path.name
    target.write_bytes(path.read_bytes())
    return Variant(
        description="test model",
        framework="onnx",
        precision="fp32",
        backend="onnxruntime",
        file=path.name,
        url=server.url(path.name),
        md5=md5 or md5_of(path),
    )


def test_download_is_verified_and_cached(file_server: FileServer, tiny_model: Path, cache: Path) -> None:
    variant = served_variant(file_server, tiny_model)
    model = obtain_model(variant, cache)
    assert model.path == model_cache_path(cache, variant)
    assert model.path.read_bytes() == tiny_model.read_bytes()
    assert oct(model.path.stat().st_mode & 0o777) == "0o644"  # the image's user reads it
    # A second call uses the (re-verified) cache, with no request.
    before = len(file_server.requests)
    assert obtain_model(variant, cache).sha256 == model.sha256
    assert len(file_server.requests) == before


def test_checksum_mismatch_leaves_nothing_in_the_cache(file_server: FileServer, tiny_model: Path, cache: Path) -> None:
    variant = served_variant(file_server, tiny_model, md5="0" * 32)
    with pytest.raises(FetchError, match="failed verification: md5"):
        obtain_model(variant, cache)
    leftovers = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert leftovers == []
    assert not model_cache_path(cache, variant).parent.exists()


def test_dropped_connection_resumes_with_range(file_server: FileServer, tmp_path: Path, cache: Path) -> None:
    import os

    big = tmp_path / "big.onnx"
    big.write_bytes(os.urandom(1_000_000))
    variant = served_variant(file_server, big)
    file_server.drop_after = 300_000
    model = obtain_model(variant, cache)
    assert model.path.read_bytes() == big.read_bytes()
    first, second = (r for _, r in file_server.requests)
    assert first is None
    assert second is not None
    resumed_at = int(second.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 300_000


def test_http_error_is_a_clear_fetch_error(file_server: FileServer, tiny_model: Path, cache: Path) -> None:
    variant = served_variant(file_server, tiny_model)
    with pytest.raises(FetchError, match="HTTP 404"):
        obtain_model(variant, cache, url=file_server.url("missing.onnx"))
    assert not model_cache_path(cache, variant).exists()


def test_corrupted_cache_entry_is_fetched_again(file_server: FileServer, tiny_model: Path, cache: Path) -> None:
    variant = served_variant(file_server, tiny_model)
    path = obtain_model(variant, cache).path
    path.write_bytes(b"corrupt")
    assert obtain_model(variant, cache).path.read_bytes() == tiny_model.read_bytes()


def test_local_model_file_is_verified(tmp_path: Path, tiny_model: Path, cache: Path, file_server: FileServer) -> None:
    variant = served_variant(file_server, tiny_model)
    assert obtain_model(variant, cache, model_file=tiny_model).path == tiny_model
    other = tmp_path / "other.onnx"
    other.write_bytes(b"not the model")
    with pytest.raises(FetchError, match="failed verification"):
        obtain_model(variant, cache, model_file=other)


def test_synthetic_model_is_deterministic_and_labelled(cache: Path) -> None:
    import onnx

    from mlbox.catalog import Synthetic
    from mlbox.synthetic import build

    variant = Variant(
        description="synthetic",
        framework="onnx",
        precision="fp32",
        backend="onnxruntime",
        file="tiny.onnx",
        synthetic=Synthetic(generator="tiny", seed=3),
    )
    first = obtain_model(variant, cache)
    assert build("tiny", 3).SerializeToString() == first.path.read_bytes()
    assert build("tiny", 4).SerializeToString() != first.path.read_bytes()
    model = onnx.load(str(first.path))
    assert {p.key: p.value for p in model.metadata_props}["mlbox.weights"] == "synthetic"
    assert "SYNTHETIC" in model.doc_string
    assert [i.name for i in model.graph.input] == ["input_tensor:0"]
    assert [o.name for o in model.graph.output] == ["ArgMax:0", "softmax_tensor:0"]


def test_mirror_serves_the_cache_layout(file_server: FileServer, tiny_model: Path, cache: Path) -> None:
    """A mirror is a copy of an mlbox cache's models/ over HTTP: MIRROR/<checksum>/<file>."""
    md5 = md5_of(tiny_model)
    (file_server.root / md5).mkdir()
    (file_server.root / md5 / "tiny.onnx").write_bytes(tiny_model.read_bytes())
    variant = Variant(
        description="published elsewhere",
        framework="onnx",
        precision="fp32",
        backend="onnxruntime",
        file="tiny.onnx",
        url="https://unreachable.invalid/tiny.onnx",
        md5=md5,
    )
    model = obtain_model(variant, cache, mirror=file_server.url("").rstrip("/"))
    assert model.source == file_server.url(f"{md5}/tiny.onnx")
    assert model.path.read_bytes() == tiny_model.read_bytes()


def test_a_file_without_a_published_checksum_is_never_downloaded(
    file_server: FileServer, tiny_model: Path, cache: Path, tmp_path: Path
) -> None:
    (file_server.root / "m.tflite").write_bytes(b"weights")
    variant = Variant(
        description="no checksum",
        framework="tflite",
        precision="fp32",
        backend="tflite",
        file="m.tflite",
        url=file_server.url("m.tflite"),
        checksum="unknown",
    )
    with pytest.raises(FetchError, match="no published checksum, so mlbox will not download it"):
        obtain_model(variant, cache)
    assert not file_server.requests
    assert not (cache / "models").exists()
    own = tmp_path / "m.tflite"
    own.write_bytes(b"weights")
    assert obtain_model(variant, cache, model_file=own).path == own  # the user's own file is accepted


def test_gzip_published_files_are_verified_then_decompressed(file_server: FileServer, cache: Path) -> None:
    import gzip
    import hashlib

    packed = gzip.compress(b"model bytes" * 1000)
    (file_server.root / "m.tflite.gz").write_bytes(packed)
    variant = Variant(
        description="gzipped",
        framework="tflite",
        precision="fp32",
        backend="tflite",
        file="m.tflite",
        url=file_server.url("m.tflite.gz"),
        compression="gzip",
        sha256=hashlib.sha256(packed).hexdigest(),
    )
    model = obtain_model(variant, cache)
    assert model.path.name == "m.tflite"
    assert model.path.read_bytes() == b"model bytes" * 1000
    assert obtain_model(variant, cache).path == model.path  # cached: no second request
    assert len(file_server.requests) == 1


def test_a_local_copy_of_a_gzip_published_file_must_be_the_download(cache: Path, tmp_path: Path) -> None:
    """The published checksum is the .gz's: --model-file takes that download, verifies it
    and decompresses it; the bare file cannot be verified and is refused, saying so."""
    import gzip
    import hashlib

    packed = gzip.compress(b"model bytes" * 1000)
    variant = Variant(
        description="gzipped",
        framework="tflite",
        precision="fp32",
        backend="tflite",
        file="m.tflite",
        url="https://example.invalid/m.tflite.gz",
        compression="gzip",
        md5=hashlib.md5(packed).hexdigest(),
    )
    download = tmp_path / "m.tflite.gz"
    download.write_bytes(packed)
    model = obtain_model(variant, cache, model_file=download)
    assert model.path.read_bytes() == b"model bytes" * 1000
    assert model.path.is_relative_to(cache)
    assert model.source == str(download)
    bare = tmp_path / "m.tflite"
    bare.write_bytes(b"model bytes" * 1000)
    with pytest.raises(FetchError, match="not gzip-compressed, but the published checksum") as err:
        obtain_model(variant, cache, model_file=bare)
    assert "m.tflite.gz" in (err.value.hint or "")
    tampered = tmp_path / "other.gz"
    tampered.write_bytes(gzip.compress(b"other bytes"))
    with pytest.raises(FetchError, match="failed verification: md5"):
        obtain_model(variant, cache, model_file=tampered)
