"""Embedded ICC profiles: which ones get a transform to sRGB."""

from __future__ import annotations

import io

from images import encode, linear_rgb_icc, rgb_array
from PIL import ImageCms

from gpuimages.engines.color import srgb_transform
from gpuimages.engines.formats import sniff


def test_transform_only_for_non_srgb_rgb_profiles():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    assert srgb_transform(linear_rgb_icc()) is not None
    assert srgb_transform(srgb) is None
    assert srgb_transform(lab) is None  # not an RGB profile
    assert srgb_transform(b"not a profile") is None
    assert srgb_transform(None) is None


def test_sniff_joins_the_jpeg_icc_profile():
    icc = linear_rgb_icc()
    blob = encode(rgb_array(), "JPEG", icc_profile=icc)
    assert sniff(blob).icc_profile == icc
    assert sniff(encode(rgb_array(), "JPEG")).icc_profile is None
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).startswith("linear RGB")
