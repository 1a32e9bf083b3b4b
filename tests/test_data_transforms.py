"""Decoding of every odd image mode and the reference's preprocessing modes on real encoded files."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from cyclegan.data.decode import BadImageError, decode_image_bytes
from cyclegan.data.transforms import EvalTransform, TrainTransform, to_unit_range


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with texture, so JPEG and resampling behave as on photographs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 7.0 + y / 11.0)], axis=-1)
    texture = rng.normal(0, 0.08, (height, width, 3))
    return (np.clip(base + texture, 0, 1) * 255).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def as_hwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(1, 2, 0).numpy().astype(np.int32)


RGB = photo_like(48, 64)


# ------------------------------------------------------------------------------------------ decoding
@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("gray png", encode(Image.fromarray(RGB).convert("L"), "PNG"), Image.fromarray(RGB).convert("L")),
        ("palette png", encode(Image.fromarray(RGB).convert("P"), "PNG"), Image.fromarray(RGB).convert("P")),
        ("rgba png", encode(Image.fromarray(np.dstack([RGB, RGB[..., :1]])), "PNG"), Image.fromarray(RGB)),
        ("la png", encode(Image.fromarray(RGB).convert("LA"), "PNG"), Image.fromarray(RGB).convert("L")),
        ("cmyk jpeg", encode(Image.fromarray(RGB).convert("CMYK"), "JPEG", quality=95), None),
        ("bmp", encode(Image.fromarray(RGB), "BMP"), Image.fromarray(RGB)),
        ("tiff", encode(Image.fromarray(RGB), "TIFF"), Image.fromarray(RGB)),
        ("ppm", encode(Image.fromarray(RGB), "PPM"), Image.fromarray(RGB)),
        ("pgm", encode(Image.fromarray(RGB).convert("L"), "PPM"), Image.fromarray(RGB).convert("L")),
        ("webp lossless", encode(Image.fromarray(RGB), "WEBP", lossless=True), Image.fromarray(RGB)),
    ],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_mode_arrives_with_the_requested_channels(name, data, expected, channels):
    decoded = decode_image_bytes(data, name, channels)
    assert decoded.dtype == torch.uint8
    assert decoded.shape == (channels, 48, 64)
    if expected is None:  # CMYK: PIL's own decode is the reference
        expected = Image.open(io.BytesIO(data))
    reference = np.asarray(expected.convert("RGB" if channels == 3 else "L")).astype(np.int32)
    if reference.ndim == 2:
        reference = reference[..., None]
    # gray from colour: libpng/libjpeg weights vs PIL's 299/587/114 differ by at most a level or two
    assert np.abs(as_hwc(decoded) - reference).max() <= (0 if channels == 3 else 2)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_images_are_scaled_not_clipped(fmt):
    values = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    data = encode(Image.fromarray(values), fmt)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    for channels in (1, 3):
        decoded = decode_image_bytes(data, f"16-bit {fmt}", channels).to(torch.int32)
        expected = torch.from_numpy(np.rint(values / 257.0).astype(np.int32))
        assert decoded.shape == (channels, 48, 64)
        assert (decoded - expected).abs().max() <= 1  # full range kept: 0 -> 0, 65535 -> 255
        assert int(decoded.max()) == 255


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_exif_orientation_is_honoured(fmt):
    picture = Image.fromarray(RGB)  # 64 wide, 48 high
    exif = picture.getexif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    data = encode(picture, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    decoded = decode_image_bytes(data, "rotated", 3)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert decoded.shape == (3, 64, 48)
    assert np.abs(as_hwc(decoded) - upright).mean() < 1.0


def _png_declaring(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose header (with a valid CRC) claims width x height pixels."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    ihdr = bytearray(data[12:29])  # type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "limit", "message"),
    [
        (b"", 10**8, "empty"),
        (encode(Image.fromarray(RGB), "JPEG")[:800], 10**8, "cannot decode"),
        (encode(Image.fromarray(RGB), "JPEG")[:300], 10**8, "not a readable image"),
        (b"this is a text file, not an image\n" * 3, 10**8, "not a readable image"),
        (_png_declaring(200_000, 200_000), 10**8, "decompression bomb"),
        (_png_declaring(5000, 5000), 10**6, "over the limit"),
        (encode(Image.fromarray(RGB), "PNG")[:-40], 10**8, "cannot decode"),
    ],
    ids=[
        "zero-byte",
        "truncated-jpeg",
        "jpeg-cut-in-header",
        "not-an-image",
        "bomb",
        "over-limit",
        "truncated-png",
    ],
)
def test_bad_files_raise_naming_the_file(data, limit, message):
    with pytest.raises(BadImageError, match=message) as caught:
        decode_image_bytes(data, "/some/where/x.jpg", 3, max_pixels=limit)
    assert caught.value.path == "/some/where/x.jpg"
    assert "/some/where/x.jpg" in str(caught.value)


# ---------------------------------------------------------------------------------------- transforms
def _image(height: int, width: int, channels: int = 3) -> torch.Tensor:
    array = photo_like(height, width)
    tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    return tensor[:1] if channels == 1 else tensor


@pytest.mark.parametrize(
    ("preprocess", "size", "expected"),
    [
        ("resize_and_crop", (100, 150), (64, 64)),
        ("crop", (100, 150), (64, 64)),
        ("scale_width", (50, 100), (64, 72)),  # width -> 72, height max(36, 64)
        ("scale_width", (150, 100), (108, 72)),
        ("scale_width_and_crop", (150, 100), (64, 64)),
        ("none", (37, 54), (36, 56)),  # each side rounded to a multiple of 4
        ("none", (2, 3), (4, 4)),
    ],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_train_transform_shapes_and_range(preprocess, size, expected, channels):
    transform = TrainTransform(preprocess, load_size=72, crop_size=64, flip=True)
    out = transform(_image(*size, channels), torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32
    assert out.shape == (channels, *expected)
    assert out.min() >= -1 and out.max() <= 1
    assert out.max() - out.min() > 1.0  # the range is used, not squeezed


@pytest.mark.parametrize("preprocess", ["resize_and_crop", "crop", "scale_width_and_crop"])
def test_images_smaller_than_the_crop_are_scaled_up(preprocess):
    transform = TrainTransform(preprocess, load_size=20, crop_size=64, flip=False)
    out = transform(_image(10, 13), torch.Generator().manual_seed(0))
    assert out.shape == (3, 64, 64)


def test_resize_follows_pil_bicubic():
    """The reference resizes with PIL bicubic; ours must agree to within rounding, and other filters don't."""
    array = photo_like(256, 256, seed=3)
    ours = TrainTransform("resize_and_crop", 286, 286, flip=False)(
        torch.from_numpy(array).permute(2, 0, 1).contiguous(), torch.Generator()
    )
    ours = ((ours + 1) * 127.5).round().permute(1, 2, 0).numpy()
    pil = np.asarray(Image.fromarray(array).resize((286, 286), Image.Resampling.BICUBIC)).astype(np.float64)
    bilinear = np.asarray(Image.fromarray(array).resize((286, 286), Image.Resampling.BILINEAR)).astype(float)
    assert np.abs(ours - pil).mean() < 0.5
    assert np.abs(ours - pil).max() <= 3
    assert np.abs(bilinear - pil).mean() > 2 * np.abs(ours - pil).mean()


def test_normalization_matches_totensor_then_normalize():
    image = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16).expand(3, 16, 16).contiguous()
    out = TrainTransform("crop", 16, 16, flip=False)(image, torch.Generator())
    reference = image.double() / 255 * 2 - 1  # the reference: ToTensor, then Normalize(0.5, 0.5)
    assert torch.allclose(out.double(), reference, atol=1e-6)
    assert out.min() == -1 and out.max() == 1


def test_random_choices_come_only_from_the_generator():
    transform = TrainTransform("resize_and_crop", 72, 64, flip=True)
    image = _image(90, 90)
    first = transform(image, torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # global RNG state must not matter
    again = transform(image, torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    outs = {transform(image, torch.Generator().manual_seed(seed)).sum().item() for seed in range(8)}
    assert len(outs) > 4  # crops and flips do vary with the seed


def test_flip_off_never_flips_and_crop_is_exact():
    image = _image(64, 64)
    transform = TrainTransform("crop", 64, 64, flip=False)
    expected = image.float() / 127.5 - 1
    for seed in range(6):
        assert torch.allclose(transform(image, torch.Generator().manual_seed(seed)), expected, atol=1e-6)


def test_flip_returns_the_image_or_its_mirror_about_half_the_time():
    image = _image(40, 40)  # the crop covers it all: only the flip can change it
    transform = TrainTransform("crop", 40, 40, flip=True)
    plain, mirror = to_unit_range(image), to_unit_range(image.flip(-1))
    assert not torch.equal(plain, mirror)
    flipped = 0
    trials = 400
    for seed in range(trials):
        out = transform(image, torch.Generator().manual_seed(seed))
        is_plain = torch.equal(out, plain)
        assert is_plain or torch.equal(out, mirror), f"seed {seed}: neither the image nor its mirror"
        flipped += not is_plain
    assert 0.4 < flipped / trials < 0.6


@pytest.mark.parametrize(("preprocess", "expected"), [("resize", (64, 64)), ("none", (48, 68))])
def test_eval_transform(preprocess, expected):
    out = EvalTransform(preprocess, 64)(_image(50, 67))
    assert out.shape == (3, *expected)
    assert out.min() >= -1 and out.max() <= 1


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="preprocess"):
        TrainTransform("zoom", 72, 64, True)
    with pytest.raises(ValueError, match="test_preprocess"):
        EvalTransform("crop", 64)
