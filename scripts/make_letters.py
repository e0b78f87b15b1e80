"""Render the bundled "letters" set: A–J in matplotlib's fonts, distorted, 32×32 greyscale.

    .venv/bin/python scripts/make_letters.py            # writes splitimpera/datasets/letters.{npz,json}
    .venv/bin/python scripts/make_letters.py --check    # regenerate in memory, compare with the shipped file

A notMNIST-like task, offline: each image is one letter drawn from a TrueType font that
matplotlib ships, with a random affine transform (rotation, scale, shear, translation),
thinner or bolder strokes, blur, its own contrast and background (about one image in seven
inverted: a dark letter on a light ground), and noise or clutter (stray lines, a fragment of
another letter, specks). Fonts are split, not images: the test fonts (``TEST_FONTS``) are
never seen in training, so the test accuracy measures generalisation to new typefaces.
Classes are balanced in each split; exact duplicate images are removed.

Everything is drawn from one seeded ``numpy.random.Generator``; the same Pillow/FreeType and
zlib give the same file bit for bit (``--check``). The npz is written with fixed zip
timestamps, so its sha256 (recorded in ``letters.json`` and checked by the loader) does not
depend on when it was written.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

CLASSES = "ABCDEFGHIJ"
SIZE = 32
SEED = 20240617
CANVAS = 96  # letters are drawn and distorted at 3× and reduced to 32×32 at the end

# Text fonts in matplotlib/mpl-data/fonts/ttf. Left out: the symbol-only and partial fonts
# (cmex10, cmsy10, STIXNonUni*, STIXSiz*, DejaVu*Display, LastResortHE), which do not draw A–J.
TRAIN_FONTS = [
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmtt10.ttf", "cmmi10.ttf",
]
# Held out for the test split: one or two from each family, never seen in training.
TEST_FONTS = [
    "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSerif-Italic.ttf",
    "STIXGeneralBol.ttf", "cmss10.ttf", "cmti10.ttf",
]
PER_FONT_TRAIN = 64  # images per (font, letter): 16 fonts × 10 letters × 64 = 10,240
PER_FONT_TEST = 42   # 6 × 10 × 42 = 2,520

OUT_DIR = Path(__file__).resolve().parent.parent / "splitimpera" / "datasets"


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def check_font(path: Path) -> None:
    """Each of A–J must draw ink, as ten different glyphs, none the font's missing-glyph box."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(path), 48)
    seen = []
    for ch in CLASSES + "\ue000":  # U+E000 (private use) draws the missing glyph, if anything
        im = Image.new("L", (80, 80))
        ImageDraw.Draw(im).text((10, 5), ch, fill=255, font=font)
        seen.append(np.asarray(im).tobytes())
    letters, missing = seen[:-1], seen[-1]
    blank = bytes(80 * 80)
    if any(g == blank or g == missing for g in letters) or len(set(letters)) != len(letters):
        raise SystemExit(f"{path.name}: does not draw all of {CLASSES}")


def _glyph(font, ch: str, stroke: int):
    """The letter, white on black, centred on a CANVAS×CANVAS image (bounding box at the centre)."""
    from PIL import Image, ImageDraw

    im = Image.new("L", (CANVAS, CANVAS))
    d = ImageDraw.Draw(im)
    l, t, r, b = d.textbbox((0, 0), ch, font=font, stroke_width=stroke)
    d.text(((CANVAS - (r - l)) / 2 - l, (CANVAS - (b - t)) / 2 - t), ch, fill=255, font=font,
           stroke_width=stroke, stroke_fill=255)
    return im


def render(font_path: Path, ch: str, rng: np.random.Generator, clutter_fonts) -> np.ndarray:
    """One distorted 32×32 uint8 image of ``ch``."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    size = int(rng.integers(50, 66))
    font = ImageFont.truetype(str(font_path), size)
    stroke_mode = rng.random()
    stroke = int(rng.integers(1, 4)) if stroke_mode < 0.3 else 0  # bolder
    im = _glyph(font, ch, stroke)
    if 0.3 <= stroke_mode < 0.5:  # thinner
        im = im.filter(ImageFilter.MinFilter(3))

    # Affine: rotation, anisotropic scale, shear, translation, about the canvas centre.
    ang = np.deg2rad(rng.uniform(-25, 25))
    sx, sy = rng.uniform(0.62, 1.15) * np.exp(rng.normal(0, 0.1, 2))
    sh = rng.uniform(-0.4, 0.4)
    tx, ty = rng.uniform(-12, 12, 2)  # canvas pixels: ±4 px at 32×32
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    fwd = rot @ np.array([[1, sh], [0, 1]]) @ np.diag([sx, sy])
    inv = np.linalg.inv(fwd)  # PIL maps output pixels back to input pixels
    c = np.array([CANVAS / 2, CANVAS / 2])
    off = c - inv @ (c + np.array([tx, ty]))
    im = im.transform((CANVAS, CANVAS), Image.AFFINE, (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1]),
                      resample=Image.BILINEAR)

    # Clutter on the canvas: a stray stroke, or a piece of another letter cut by the border.
    kind = rng.random()
    if kind < 0.3:
        d = ImageDraw.Draw(im)
        for _ in range(1 + int(rng.random() < 0.3)):
            p = rng.uniform(0, CANVAS, 4)
            d.line([(p[0], p[1]), (p[2], p[3])], fill=int(rng.integers(120, 256)), width=int(rng.integers(2, 7)))
    elif kind < 0.55:
        other = ImageFont.truetype(str(clutter_fonts[int(rng.integers(len(clutter_fonts)))]), size)
        piece = _glyph(other, CLASSES[int(rng.integers(len(CLASSES)))], 0)
        side = int(rng.integers(4))
        shift = int(rng.integers(58, 72))
        dx, dy = [(shift, 0), (-shift, 0), (0, shift), (0, -shift)][side]
        im = Image.fromarray(np.maximum(np.asarray(im), np.asarray(piece.transform(
            (CANVAS, CANVAS), Image.AFFINE, (1, 0, -dx, 0, 1, -dy), resample=Image.BILINEAR))))

    a = np.asarray(im.resize((SIZE, SIZE), Image.BOX), dtype=np.float32) / 255.0

    # Contrast: background and ink levels; a blurred letter now and then.
    if rng.random() < 0.2:
        a = np.asarray(Image.fromarray((a * 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(rng.uniform(0.6, 1.0))), dtype=np.float32) / 255.0
    bg = rng.uniform(0, 0.4) if rng.random() < 0.5 else 0.0
    ink = rng.uniform(bg + 0.25, 1.0)
    a = bg + (ink - bg) * a
    if rng.random() < 0.15:  # dark letter on a light background
        a = 1.0 - a
    # Noise: specks (sparse, cheap to store) or faint Gaussian noise, on some images.
    r = rng.random()
    if r < 0.3:
        n = int(rng.integers(5, 40))
        ij = rng.integers(0, SIZE, (n, 2))
        a[ij[:, 0], ij[:, 1]] = rng.uniform(0, 1, n)
    elif r < 0.45:
        a = a + rng.normal(0, rng.uniform(0.03, 0.08), a.shape)
    # 32 grey levels: a smaller file, still far finer than the distortions.
    return (np.clip(np.round(a * 31), 0, 31) * (255 / 31)).round().astype(np.uint8)


def make_split(fonts: list[str], per: int, rng: np.random.Generator, clutter_fonts):
    d = font_dir()
    xs, ys, fs = [], [], []
    for fi, name in enumerate(fonts):
        for li, ch in enumerate(CLASSES):
            for _ in range(per):
                xs.append(render(d / name, ch, rng, clutter_fonts))
                ys.append(li)
                fs.append(fi)
    return np.stack(xs), np.array(ys, np.uint8), np.array(fs, np.uint8)


def dedupe(x, y, f, forbidden: set[bytes] = frozenset()):
    """Drop exact duplicates (keep the first) and images in ``forbidden``, then cut every
    class to the smallest class count (the first images of each class), so classes stay balanced."""
    seen, keep = set(forbidden), []
    for i, img in enumerate(x):
        k = img.tobytes()
        if k not in seen:
            seen.add(k)
            keep.append(i)
    keep = np.array(keep)
    yk = y[keep]
    n = min(int((yk == c).sum()) for c in range(len(CLASSES)))
    keep = np.sort(np.concatenate([keep[yk == c][:n] for c in range(len(CLASSES))]))
    return x[keep], y[keep], f[keep], len(x) - len(keep)


def generate() -> tuple[dict[str, np.ndarray], dict]:
    d = font_dir()
    for name in TRAIN_FONTS + TEST_FONTS:
        check_font(d / name)
    assert not set(TRAIN_FONTS) & set(TEST_FONTS)
    rng = np.random.default_rng(SEED)
    # Clutter fragments come from the split's own fonts: no test font leaks into training.
    xtr, ytr, ftr = make_split(TRAIN_FONTS, PER_FONT_TRAIN, rng, [d / n for n in TRAIN_FONTS])
    xte, yte, fte = make_split(TEST_FONTS, PER_FONT_TEST, rng, [d / n for n in TEST_FONTS])
    xtr, ytr, ftr, drop_tr = dedupe(xtr, ytr, ftr)
    xte, yte, fte, drop_te = dedupe(xte, yte, fte, forbidden={img.tobytes() for img in xtr})
    arrays = {"x_train": xtr, "y_train": ytr, "font_train": ftr, "x_test": xte, "y_test": yte, "font_test": fte}
    pix = xtr.astype(np.float64) / 255.0
    meta = {
        "classes": list(CLASSES),
        "size": SIZE,
        "seed": SEED,
        "train": {"count": len(ytr), "per_class": int((ytr == 0).sum()), "fonts": TRAIN_FONTS,
                  "duplicates_removed": drop_tr},
        "test": {"count": len(yte), "per_class": int((yte == 0).sum()), "fonts": TEST_FONTS,
                 "duplicates_removed": drop_te},
        "train_mean": round(float(pix.mean()), 4),
        "train_std": round(float(pix.std()), 4),
    }
    return arrays, meta


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``np.savez_compressed`` with fixed member timestamps (numpy stamps the current time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for k, v in arrays.items():
            info = zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(v), allow_pickle=False)
            zf.writestr(info, member.getvalue(), compresslevel=9)
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="regenerate in memory and compare with the shipped file")
    args = ap.parse_args(argv)
    arrays, meta = generate()
    blob = npz_bytes(arrays)
    digest = hashlib.sha256(blob).hexdigest()
    print(f"train {meta['train']['count']} images ({len(TRAIN_FONTS)} fonts), test {meta['test']['count']} "
          f"({len(TEST_FONTS)} fonts), {len(blob) / 1e6:.2f} MB, sha256 {digest[:16]}…")
    if args.check:
        shipped = json.loads((OUT_DIR / "letters.json").read_text())
        same = shipped["sha256"] == digest == hashlib.sha256((OUT_DIR / "letters.npz").read_bytes()).hexdigest()
        print("identical to the shipped file" if same else "DIFFERS from the shipped file")
        return 0 if same else 1
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "letters.npz").write_bytes(blob)
    meta["file_bytes"] = len(blob)
    meta["sha256"] = digest
    (OUT_DIR / "letters.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {OUT_DIR / 'letters.npz'} and letters.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
