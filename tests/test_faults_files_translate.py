"""Hostile and unlucky inputs to cyclegan-translate: decompression bombs (a real 50000x50000 PNG and a
header-only one), damaged PNGs, hard-linked outputs, an output that is a file, EXIF-rotated photos,
ONNX files, JPEG quality. Real files, real Hydra composition, the real console script."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from cyclegan.cli.translate import run_translate
from cyclegan.data.decode import decode_image_bytes
from cyclegan.inference import export_generator, load_generator, open_generator
from cyclegan.nn import build_generator

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def reference_generator_file(path: Path, seed: int = 0) -> Path:
    """A tiny random ResNet generator saved in the reference key layout."""
    torch.manual_seed(seed)
    net = build_generator("resnet", n_blocks=1, ngf=4, layout="reference")
    torch.save(net.state_dict(), path)
    return path


def translate_config(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="translate", overrides=[*overrides, "progress=false"])


def photo(height: int, width: int, seed: int = 0) -> Image.Image:
    """A smooth gradient with texture: JPEG and translation errors behave as on photographs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 7.0 + y / 11.0)], axis=-1)
    return Image.fromarray((np.clip(base + rng.normal(0, 0.04, base.shape), 0, 1) * 255).astype(np.uint8))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def valid_black_png(side: int) -> bytes:
    """A valid 1-bit grayscale PNG of side x side pixels, every row present (about 300 kB for 50000)."""
    row = b"\x00" + bytes((side + 7) // 8)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    rows_per_block = 1000
    stream = b"".join(compressor.compress(row * rows_per_block) for _ in range(side // rows_per_block))
    stream += compressor.compress(row * (side % rows_per_block)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", stream)
        + png_chunk(b"IEND", b"")
    )


def header_only_png(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose header (with a valid CRC) claims width x height pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def as_uint8(tensor: torch.Tensor) -> np.ndarray:
    return ((tensor.clamp(-1, 1) + 1) * 127.5).round().to(torch.int16).permute(1, 2, 0).numpy()


# ------------------------------------------------------------------------------------------ bombs
def test_huge_and_header_only_bombs_are_skipped_and_the_rest_translated(tmp_path):
    checkpoint = reference_generator_file(tmp_path / "latest_net_G.pth")
    source = tmp_path / "in"
    source.mkdir()
    photo(20, 24, seed=1).save(source / "a.png")
    (source / "b_valid_50000x50000.png").write_bytes(valid_black_png(50_000))
    (source / "c_header_only.png").write_bytes(header_only_png(50_000, 50_000))
    photo(20, 24, seed=2).save(source / "d.png")
    out = tmp_path / "out"
    report = run_translate(translate_config([f"checkpoint={checkpoint}", f"input={source}", f"output={out}"]))
    report = report["AtoB"]
    assert [path.name for path in report.written] == ["a.png", "d.png"]  # the image after a bomb too
    assert [(path.name, "decompression bomb" in reason) for path, reason in report.skipped] == [
        ("b_valid_50000x50000.png", True),
        ("c_header_only.png", True),
    ]
    assert "skipped 2" in report.summary() and "c_header_only.png" in report.summary()


def test_max_pixels_sets_the_limit_both_ways(tmp_path):
    checkpoint = reference_generator_file(tmp_path / "latest_net_G.pth")
    source = tmp_path / "in"
    source.mkdir()
    photo(30, 30).save(source / "photo.png")
    (source / "big.png").write_bytes(header_only_png(20_000, 20_000))  # 4e8 pixels: over PIL's own 2 x limit
    common = [f"checkpoint={checkpoint}", f"input={source}", f"output={tmp_path / 'out'}"]
    lowered = run_translate(translate_config([*common, "max_pixels=500"]))["AtoB"]
    assert {path.name: reason for path, reason in lowered.skipped}["photo.png"].endswith(
        "over the limit of 500 pixels (max_image_pixels)"
    )
    default_limit = Image.MAX_IMAGE_PIXELS
    lifted = run_translate(translate_config([*common, "max_pixels=500000000"]))["AtoB"]
    assert [path.name for path in lifted.written] == ["photo.png"]
    # allowed in by size, it is then found to hold 1 pixel's data: refused as damaged, not as a bomb
    ((path, reason),) = lifted.skipped
    assert path.name == "big.png" and "damaged PNG" in reason
    assert default_limit == Image.MAX_IMAGE_PIXELS  # PIL's global limit is restored
    with pytest.raises(ValueError, match="max_pixels must be a positive number"):
        run_translate(translate_config([*common, "max_pixels=0"]))


# ------------------------------------------------------------------------------- damaged, odd names
def test_the_console_script_skips_a_damaged_png_instead_of_crashing(tmp_path):
    checkpoint = reference_generator_file(tmp_path / "latest_net_G.pth")
    source = tmp_path / "in"
    source.mkdir()
    photo(20, 24).save(source / "good.png")
    rows = b"".join(b"\x00" + bytes(900) for _ in range(2))  # 2 rows of a 300x300 RGB image
    header = struct.pack(">IIBBBBB", 300, 300, 8, 2, 0, 0, 0)
    damaged = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
    (source / "damaged.png").write_bytes(damaged + png_chunk(b"IEND", b""))
    with open(bytes(source) + b"/caf\xe9.png", "wb") as file:  # a name that is not UTF-8, also damaged
        file.write(damaged + png_chunk(b"IEND", b""))
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("cyclegan-translate")),
            f"checkpoint={checkpoint}",
            f"input={source}",
            f"output={tmp_path / 'out'}",
            "progress=false",
        ],
        capture_output=True,
        timeout=300,
    )
    stdout = run.stdout.decode("utf-8")  # the report itself is valid UTF-8
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr.decode(errors='replace')[-2000:]}"
    assert "translated 1 image(s), skipped 2" in stdout
    assert "damaged.png: cannot decode PNG data (damaged PNG: its image data ends after" in stdout
    assert "caf\\xe9.png: cannot decode PNG data (damaged PNG" in stdout
    assert (tmp_path / "out" / "good.png").is_file()


def test_fifos_are_listed_as_skipped_and_symlinked_folders_followed(tmp_path):
    checkpoint = reference_generator_file(tmp_path / "latest_net_G.pth")
    source = tmp_path / "in"
    source.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    photo(20, 24).save(elsewhere / "far.jpg")
    (source / "linked").symlink_to(elsewhere)
    os.mkfifo(source / "pipe.png")
    report = run_translate(
        translate_config([f"checkpoint={checkpoint}", f"input={source}", f"output={tmp_path / 'out'}"])
    )["AtoB"]
    assert report.written == [tmp_path / "out" / "linked" / "far.jpg"]
    assert [(path.name, "not a regular file" in reason) for path, reason in report.skipped] == [
        ("pipe.png", True)
    ]


# ------------------------------------------------------------------------------------- output paths
@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_an_output_linked_to_its_input_is_refused_and_the_input_kept(tmp_path, link):
    checkpoint = reference_generator_file(tmp_path / "latest_net_G.pth")
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    out.mkdir()
    photo(20, 24).save(source / "x.png")
    before = (source / "x.png").read_bytes()
    if link == "hard":
        os.link(source / "x.png", out / "x.png")  # another name of the very same file
    else:
        (out / "x.png").symlink_to(source / "x.png")
    with pytest.raises(ValueError, match=r"refusing to overwrite input files: 1 output.*out/x\.png"):
        run_translate(translate_config([f"checkpoint={checkpoint}", f"input={source}", f"output={out}"]))
    assert (source / "x.png").read_bytes() == before


def test_an_output_that_is_a_file_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    from cyclegan.cli import translate as cli

    checkpoint = reference_generator_file(tmp_path / "latest_net_G.pth")
    photo(20, 24).save(tmp_path / "x.png")
    (tmp_path / "taken.png").write_bytes(b"not a folder")
    for output, message in (
        (tmp_path / "taken.png", "is a file, not a folder"),
        (tmp_path / "taken.png" / "sub", "lies under"),
    ):
        argv = [
            "cyclegan-translate",
            f"checkpoint={checkpoint}",
            f"input={tmp_path / 'x.png'}",
            f"output={output}",
        ]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("cyclegan-translate: error: output=") and message in error
        assert len(error.splitlines()) == 1
    assert (tmp_path / "taken.png").read_bytes() == b"not a folder"


# ------------------------------------------------------------------------------------ what is read
def test_an_exif_rotated_jpeg_is_translated_upright_as_training_sees_it(tmp_path):
    checkpoint = reference_generator_file(tmp_path / "latest_net_G.pth")
    source = tmp_path / "in"
    source.mkdir()
    picture = photo(32, 48)  # stored 48 wide and 32 high
    exif = picture.getexif()
    exif[0x0112] = 6  # a phone held upright: display rotated 90 degrees clockwise, 32 wide and 48 high
    picture.save(source / "phone.jpg", exif=exif.tobytes(), quality=95)
    out = tmp_path / "out"
    run_translate(
        translate_config([f"checkpoint={checkpoint}", f"input={source}", f"output={out}", "output_ext=png"])
    )
    with Image.open(out / "phone.png") as result:
        assert result.size == (32, 48)
        got = np.asarray(result, dtype=np.int16)
    upright = decode_image_bytes((source / "phone.jpg").read_bytes(), "phone.jpg", 3)  # training's decode
    assert upright.shape == (3, 48, 32)
    with torch.no_grad():
        expected = as_uint8(load_generator(checkpoint)(upright[None].float() / 127.5 - 1)[0])
    assert np.abs(got - expected).max() <= 1


def test_jpeg_outputs_are_written_at_quality_95_or_as_configured(tmp_path):
    checkpoint = reference_generator_file(tmp_path / "latest_net_G.pth")
    photo(64, 64).save(tmp_path / "x.png")

    def quantization_at(quality: int) -> dict:
        buffer = io.BytesIO()
        photo(8, 8).save(buffer, "JPEG", quality=quality)
        return Image.open(buffer).quantization

    for options, quality in (([], 95), (["jpeg_quality=80"], 80)):
        out = tmp_path / f"out{quality}"
        common = [f"checkpoint={checkpoint}", f"input={tmp_path / 'x.png'}", f"output={out}"]
        run_translate(translate_config([*common, "output_ext=jpg", *options]))
        with Image.open(out / "x.jpg") as jpeg:  # the quantization tables are what the quality sets
            assert jpeg.quantization == quantization_at(quality)
            assert jpeg.quantization != quantization_at(75)  # PIL's default
    with pytest.raises(ValueError, match="jpeg_quality must be between 1 and 100"):
        run_translate(translate_config([*common, "jpeg_quality=0"]))


# --------------------------------------------------------------------------------------------- ONNX
def test_an_onnx_export_translates_like_its_source_and_refuses_tiling(tmp_path):
    checkpoint = reference_generator_file(tmp_path / "latest_net_G.pth")
    onnx_file = export_generator(open_generator(checkpoint), "onnx", tmp_path / "g.onnx")
    photo(37, 53).save(tmp_path / "x.png")
    common = [f"input={tmp_path / 'x.png'}", "output_ext=png"]
    run_translate(translate_config([*common, f"checkpoint={onnx_file}", f"output={tmp_path / 'onnx'}"]))
    run_translate(translate_config([*common, f"checkpoint={checkpoint}", f"output={tmp_path / 'torch'}"]))
    with Image.open(tmp_path / "onnx" / "x.png") as a, Image.open(tmp_path / "torch" / "x.png") as b:
        assert a.size == (53, 37)
        assert np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max() <= 1
    with pytest.raises(ValueError, match="TorchScript and ONNX files cannot be tiled"):
        run_translate(
            translate_config([*common, f"checkpoint={onnx_file}", f"output={tmp_path / 't'}", "tile_size=16"])
        )


def test_an_onnx_file_that_keeps_its_weights_elsewhere_is_refused(tmp_path):
    import onnx

    from cyclegan.checkpoint_files import CheckpointError

    checkpoint = reference_generator_file(tmp_path / "latest_net_G.pth")
    onnx_file = export_generator(open_generator(checkpoint), "onnx", tmp_path / "g.onnx")
    model = onnx.load(str(onnx_file))
    onnx.save_model(model, str(onnx_file), save_as_external_data=True, location="w.bin", size_threshold=0)
    with pytest.raises(CheckpointError, match=r"g\.onnx keeps weights in other files"):
        load_generator(onnx_file)


def test_without_onnxruntime_an_onnx_file_is_one_line_naming_the_extra(tmp_path):
    checkpoint = reference_generator_file(tmp_path / "latest_net_G.pth")
    onnx_file = export_generator(open_generator(checkpoint), "onnx", tmp_path / "g.onnx")
    photo(20, 24).save(tmp_path / "x.png")
    argv = [
        "cyclegan-translate",
        f"checkpoint={onnx_file}",
        f"input={tmp_path / 'x.png'}",
        f"output={tmp_path}/o",
    ]
    code = (
        "import sys\n"
        "sys.modules['onnxruntime'] = None  # as if not installed: importing it raises ImportError\n"
        f"sys.argv = {argv!r}\n"
        "from cyclegan.cli.translate import main\n"
        "main()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.strip() == (
        "cyclegan-translate: error: onnxruntime is not installed; install the onnx extra: "
        "pip install 'cyclegan[onnx]'"
    )
